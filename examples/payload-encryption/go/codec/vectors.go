package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	commonpb "go.temporal.io/api/common/v1"
	"google.golang.org/protobuf/proto"
)

// jsonPayload is a Payload in proto JSON: metadata values and data in standard base64.
type jsonPayload struct {
	Metadata map[string]string `json:"metadata"`
	Data     string            `json:"data"`
}

func (j jsonPayload) proto() (*commonpb.Payload, error) {
	p := &commonpb.Payload{Metadata: map[string][]byte{}}
	for k, v := range j.Metadata {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("metadata %q: %w", k, err)
		}
		p.Metadata[k] = b
	}
	b, err := base64.StdEncoding.DecodeString(j.Data)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	p.Data = b
	return p, nil
}

type vectorFile struct {
	Keys    map[string]string `json:"keys"`
	Encrypt []struct {
		Name            string      `json:"name"`
		KeyID           string      `json:"key_id"`
		NonceHex        string      `json:"nonce_hex"`
		Payload         jsonPayload `json:"payload"`
		PayloadProtoHex string      `json:"payload_proto_hex"`
		Encrypted       jsonPayload `json:"encrypted"`
	} `json:"encrypt"`
	DecryptOnly []struct {
		Name      string      `json:"name"`
		Payload   jsonPayload `json:"payload"`
		Encrypted jsonPayload `json:"encrypted"`
	} `json:"decrypt_only"`
	PassThrough []jsonPayload `json:"pass_through"`
	Tampered    []struct {
		Name      string      `json:"name"`
		Reason    string      `json:"reason"`
		Encrypted jsonPayload `json:"encrypted"`
	} `json:"tampered"`
}

// samePayload compares fields (metadata as a map, data), not serialised bytes.
func samePayload(a, b *commonpb.Payload) bool {
	if len(a.GetMetadata()) != len(b.GetMetadata()) || !bytes.Equal(a.GetData(), b.GetData()) {
		return false
	}
	for k, v := range a.GetMetadata() {
		w, ok := b.GetMetadata()[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// CheckVectors checks this codec against vectors/test-vectors.json, writes one line per case group
// and returns an error naming every failed case.
func CheckVectors(path string, out io.Writer) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var v vectorFile
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	keys := map[string][]byte{}
	var first string
	for id, b64 := range v.Keys {
		k, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return fmt.Errorf("keys.%s: %w", id, err)
		}
		keys[id] = k
		first = id
	}
	c, err := New(keys, first)
	if err != nil {
		return err
	}

	var failures []string
	fail := func(group, name, format string, args ...any) {
		failures = append(failures, fmt.Sprintf("%s %q: %s", group, name, fmt.Sprintf(format, args...)))
	}
	report := func(group string, total, before int) {
		bad := len(failures) - before
		status := "ok"
		if bad > 0 {
			status = "FAILED"
		}
		fmt.Fprintf(out, "%s: %d/%d %s\n", group, total-bad, total, status)
	}

	before := len(failures)
	for _, e := range v.Encrypt {
		p, err := e.Payload.proto()
		if err != nil {
			fail("encrypt", e.Name, "payload: %v", err)
			continue
		}
		want, err := e.Encrypted.proto()
		if err != nil {
			fail("encrypt", e.Name, "encrypted: %v", err)
			continue
		}
		ser, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p)
		if hex.EncodeToString(ser) != e.PayloadProtoHex {
			fail("encrypt", e.Name, "serialisation %x differs from payload_proto_hex", ser)
		}
		nonce, _ := hex.DecodeString(e.NonceHex)
		got, err := c.seal(p, e.KeyID, nonce)
		if err != nil {
			fail("encrypt", e.Name, "seal: %v", err)
			continue
		}
		if !samePayload(got, want) {
			fail("encrypt", e.Name, "sealed payload differs from encrypted")
		}
		dec, err := c.Decode([]*commonpb.Payload{want})
		if err != nil || !samePayload(dec[0], p) {
			fail("encrypt", e.Name, "decoding encrypted does not give payload (%v)", err)
		}
	}
	report("encrypt", len(v.Encrypt), before)

	before = len(failures)
	for _, e := range v.DecryptOnly {
		p, err1 := e.Payload.proto()
		enc, err2 := e.Encrypted.proto()
		if err := errors.Join(err1, err2); err != nil {
			fail("decrypt_only", e.Name, "%v", err)
			continue
		}
		dec, err := c.Decode([]*commonpb.Payload{enc})
		if err != nil || !samePayload(dec[0], p) {
			fail("decrypt_only", e.Name, "decoding does not give payload (%v)", err)
		}
	}
	report("decrypt_only", len(v.DecryptOnly), before)

	before = len(failures)
	for i, j := range v.PassThrough {
		name := fmt.Sprintf("#%d", i)
		p, err := j.proto()
		if err != nil {
			fail("pass_through", name, "%v", err)
			continue
		}
		dec, err := c.Decode([]*commonpb.Payload{p})
		if err != nil || !samePayload(dec[0], p) {
			fail("pass_through", name, "not returned unchanged (%v)", err)
		}
	}
	report("pass_through", len(v.PassThrough), before)

	before = len(failures)
	for _, e := range v.Tampered {
		enc, err := e.Encrypted.proto()
		if err != nil {
			fail("tampered", e.Name, "%v", err)
			continue
		}
		_, err = c.Decode([]*commonpb.Payload{enc})
		var de *DecodeError
		switch {
		case err == nil:
			fail("tampered", e.Name, "decoded, expected a %s failure", e.Reason)
		case !errors.As(err, &de):
			fail("tampered", e.Name, "failed without a reason: %v", err)
		case de.Reason != e.Reason:
			fail("tampered", e.Name, "failed as %s, expected %s (%v)", de.Reason, e.Reason, err)
		}
	}
	report("tampered", len(v.Tampered), before)

	if len(failures) > 0 {
		for _, f := range failures {
			fmt.Fprintln(out, "  FAILED", f)
		}
		return fmt.Errorf("%d test vector(s) failed", len(failures))
	}
	return nil
}
