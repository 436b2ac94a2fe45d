// Command codec-example: the Go SDK side of examples/payload-encryption (README.md there says the
// shared interface). Every payload is encrypted by codec.Codec before it leaves this process.
//
//	go run . vectors ../vectors/test-vectors.json
//	go run . worker --task-queue Q
//	go run . run --task-queue Q --workflow-id W --input S
//	go run . start --task-queue Q --workflow-id W --input S [--workflow-type T]
//	go run . decode-history --workflow-id W
//	go run . codec-server --listen 127.0.0.1:8090
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/reflect/protoreflect"

	"temporal-bootstrap/examples/payload-encryption/go/codec"
)

const usage = `usage: codec-example COMMAND [flags]
  vectors FILE                                   check the codec against test-vectors.json
  worker --task-queue Q                          run a worker until SIGINT/SIGTERM
  run --task-queue Q --workflow-id W --input S   EncryptedWorkflow(S) with an in-process worker
  start --task-queue Q --workflow-id W --input S [--workflow-type T]   client only
  decode-history --workflow-id W [--run-id R]    every payload of the history, decoded (JSON lines)
  codec-server --listen ADDR                     the Go SDK's own codec HTTP handler with this codec
                                                 (no authentication, no audit: the bench baseline)
Keys: CODEC_KEY_FILES / CODEC_WRAPPED_KEY_FILES / CODEC_CURRENT_KEY; connection: TEMPORAL_ADDRESS,
TEMPORAL_NAMESPACE, TEMPORAL_TLS_CA/CERT/KEY/SERVER_NAME (see README.md).`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "vectors":
		if len(args) != 1 {
			fmt.Fprintln(os.Stderr, "usage: codec-example vectors FILE")
			os.Exit(2)
		}
		err = codec.CheckVectors(args[0], os.Stdout)
	case "worker":
		err = cmdWorker(args)
	case "run":
		err = cmdRun(args)
	case "start":
		err = cmdStart(args)
	case "decode-history":
		err = cmdDecodeHistory(args)
	case "codec-server":
		err = cmdCodecServer(args)
	case "-h", "--help", "help":
		fmt.Println(usage)
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n%s\n", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// --- workflows and activities (names shared by the four SDK examples) ---------------------------

// EncryptedWorkflow returns "processed: " + input through the activity Greet.
func EncryptedWorkflow(ctx workflow.Context, input string) (string, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: 30 * time.Second})
	var out string
	err := workflow.ExecuteActivity(ctx, "Greet", input).Get(ctx, &out)
	return out, err
}

// Greet is the activity of EncryptedWorkflow.
func Greet(_ context.Context, input string) (string, error) { return "processed: " + input, nil }

// CrossLanguageWorkflow calls PythonActivity on codec-cross-python, then TypeScriptActivity on
// codec-cross-typescript with that result, and returns the last result.
func CrossLanguageWorkflow(ctx workflow.Context, input string) (string, error) {
	step := func(queue, activityName, in string) (string, error) {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			TaskQueue:              queue,
			StartToCloseTimeout:    30 * time.Second,
			ScheduleToCloseTimeout: 5 * time.Minute,
		})
		var out string
		err := workflow.ExecuteActivity(actx, activityName, in).Get(actx, &out)
		return out, err
	}
	py, err := step("codec-cross-python", "PythonActivity", input)
	if err != nil {
		return "", err
	}
	return step("codec-cross-typescript", "TypeScriptActivity", py)
}

func register(w worker.Worker) {
	w.RegisterWorkflowWithOptions(EncryptedWorkflow, workflow.RegisterOptions{Name: "EncryptedWorkflow"})
	w.RegisterWorkflowWithOptions(CrossLanguageWorkflow, workflow.RegisterOptions{Name: "CrossLanguageWorkflow"})
	w.RegisterActivityWithOptions(Greet, activity.RegisterOptions{Name: "Greet"})
}

// --- client -------------------------------------------------------------------------------------

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func tlsFromEnv() (*tls.Config, error) {
	ca, cert, key := os.Getenv("TEMPORAL_TLS_CA"), os.Getenv("TEMPORAL_TLS_CERT"), os.Getenv("TEMPORAL_TLS_KEY")
	if ca == "" && cert == "" && key == "" {
		return nil, nil
	}
	if ca == "" || cert == "" || key == "" {
		return nil, errors.New("TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together")
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, fmt.Errorf("TEMPORAL_TLS_CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("TEMPORAL_TLS_CA: %s holds no PEM certificate", ca)
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("TEMPORAL_TLS_CERT/TEMPORAL_TLS_KEY: %w", err)
	}
	return &tls.Config{
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
		ServerName:   os.Getenv("TEMPORAL_TLS_SERVER_NAME"),
		MinVersion:   tls.VersionTLS12,
	}, nil
}

func dial() (client.Client, *codec.Codec, error) {
	c, err := codec.FromEnv()
	if err != nil {
		return nil, nil, err
	}
	tlsConfig, err := tlsFromEnv()
	if err != nil {
		return nil, nil, err
	}
	cl, err := client.Dial(client.Options{
		HostPort:          env("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
		Namespace:         env("TEMPORAL_NAMESPACE", "default"),
		DataConverter:     converter.NewCodecDataConverter(converter.GetDefaultDataConverter(), c),
		ConnectionOptions: client.ConnectionOptions{TLS: tlsConfig},
		Logger:            tlog.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to %s: %w", env("TEMPORAL_ADDRESS", "127.0.0.1:7233"), err)
	}
	return cl, c, nil
}

func randomID(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

type startFlags struct {
	taskQueue, workflowID, input, workflowType string
}

func parseStart(name string, args []string, withType bool) (startFlags, error) {
	var f startFlags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&f.taskQueue, "task-queue", randomID("encrypted-"), "task queue")
	fs.StringVar(&f.workflowID, "workflow-id", randomID("encrypted-"), "workflow id")
	fs.StringVar(&f.input, "input", "hello, encrypted world", "workflow input")
	if withType {
		fs.StringVar(&f.workflowType, "workflow-type", "EncryptedWorkflow", "workflow type")
	} else {
		f.workflowType = "EncryptedWorkflow"
	}
	return f, fs.Parse(args)
}

func execute(cl client.Client, f startFlags) error {
	run, err := cl.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{
		ID:                       f.workflowID,
		TaskQueue:                f.taskQueue,
		WorkflowExecutionTimeout: 10 * time.Minute,
	}, f.workflowType, f.input)
	if err != nil {
		return fmt.Errorf("starting %s: %w", f.workflowType, err)
	}
	var result string
	if err := run.Get(context.Background(), &result); err != nil {
		return fmt.Errorf("%s %s: %w", f.workflowType, f.workflowID, err)
	}
	fmt.Println(result)
	return nil
}

func cmdWorker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	queue := fs.String("task-queue", "", "task queue (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *queue == "" {
		return errors.New("worker: --task-queue is required")
	}
	cl, c, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	w := worker.New(cl, *queue, worker.Options{})
	register(w)
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	fmt.Fprintf(os.Stderr, "worker: encrypting with key %s\n", c.Current())
	fmt.Printf("worker ready: namespace=%s task-queue=%s\n", env("TEMPORAL_NAMESPACE", "default"), *queue)
	<-worker.InterruptCh() // SIGINT and SIGTERM stop it
	return nil
}

func cmdRun(args []string) error {
	f, err := parseStart("run", args, false)
	if err != nil {
		return err
	}
	cl, _, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	w := worker.New(cl, f.taskQueue, worker.Options{})
	register(w)
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Stop()
	return execute(cl, f)
}

func cmdStart(args []string) error {
	f, err := parseStart("start", args, true)
	if err != nil {
		return err
	}
	cl, _, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	return execute(cl, f)
}

// --- decode-history -----------------------------------------------------------------------------

var payloadName = (&commonpb.Payload{}).ProtoReflect().Descriptor().FullName()

// payloadsOf walks a message in field declaration order (map entries by sorted key) and returns
// every temporal.api.common.v1.Payload in it.
func payloadsOf(m protoreflect.Message) []*commonpb.Payload {
	if m.Descriptor().FullName() == payloadName {
		if p, ok := m.Interface().(*commonpb.Payload); ok {
			return []*commonpb.Payload{p}
		}
	}
	var out []*commonpb.Payload
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		v := m.Get(fd)
		switch {
		case fd.IsMap():
			if fd.MapValue().Kind() != protoreflect.MessageKind {
				continue
			}
			var keys []protoreflect.MapKey
			v.Map().Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			sort.Slice(keys, func(a, b int) bool { return keys[a].String() < keys[b].String() })
			for _, k := range keys {
				out = append(out, payloadsOf(v.Map().Get(k).Message())...)
			}
		case fd.IsList():
			if fd.Kind() != protoreflect.MessageKind {
				continue
			}
			for j := 0; j < v.List().Len(); j++ {
				out = append(out, payloadsOf(v.List().Get(j).Message())...)
			}
		case fd.Kind() == protoreflect.MessageKind:
			out = append(out, payloadsOf(v.Message())...)
		}
	}
	return out
}

func payloadJSON(p *commonpb.Payload) map[string]any {
	md := map[string]string{}
	for k, v := range p.GetMetadata() {
		md[k] = base64.StdEncoding.EncodeToString(v)
	}
	return map[string]any{"metadata": md, "data": base64.StdEncoding.EncodeToString(p.GetData())}
}

func cmdDecodeHistory(args []string) error {
	fs := flag.NewFlagSet("decode-history", flag.ContinueOnError)
	wid := fs.String("workflow-id", "", "workflow id (required)")
	rid := fs.String("run-id", "", "run id (default: the latest run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *wid == "" {
		return errors.New("decode-history: --workflow-id is required")
	}
	cl, c, err := dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	iter := cl.GetWorkflowHistory(context.Background(), *wid, *rid, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	enc := json.NewEncoder(os.Stdout) // sorts map keys
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return fmt.Errorf("history of %s: %w", *wid, err)
		}
		for _, p := range payloadsOf(ev.ProtoReflect()) {
			dec, err := c.Decode([]*commonpb.Payload{p})
			if err != nil {
				return fmt.Errorf("event %d: %w", ev.GetEventId(), err)
			}
			if err := enc.Encode(map[string]any{"event_id": ev.GetEventId(), "payload": payloadJSON(dec[0])}); err != nil {
				return err
			}
		}
	}
	return nil
}

// cmdCodecServer serves POST /encode and /decode with converter.NewPayloadCodecHTTPHandler, the
// remote codec server a Go team writes from the SDK in a few lines. scripts/bench/codec loads it
// beside temporal-bootstrap codec-server as the baseline.
func cmdCodecServer(args []string) error {
	fs := flag.NewFlagSet("codec-server", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8090", "address to listen on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := codec.FromEnv()
	if err != nil {
		return err
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           converter.NewPayloadCodecHTTPHandler(c),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(os.Stderr, "codec server listening on http://%s\n", *listen)
	return srv.ListenAndServe()
}
