package codecexample;

import com.google.protobuf.Descriptors.FieldDescriptor;
import com.google.protobuf.Message;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContext;
import io.temporal.activity.ActivityInterface;
import io.temporal.activity.ActivityMethod;
import io.temporal.activity.ActivityOptions;
import io.temporal.api.common.v1.Payload;
import io.temporal.api.history.v1.HistoryEvent;
import io.temporal.client.WorkflowClient;
import io.temporal.client.WorkflowClientOptions;
import io.temporal.client.WorkflowOptions;
import io.temporal.client.WorkflowStub;
import io.temporal.common.converter.CodecDataConverter;
import io.temporal.common.converter.DefaultDataConverter;
import io.temporal.serviceclient.WorkflowServiceStubs;
import io.temporal.serviceclient.WorkflowServiceStubsOptions;
import io.temporal.worker.Worker;
import io.temporal.worker.WorkerFactory;
import io.temporal.workflow.Workflow;
import io.temporal.workflow.WorkflowInterface;
import io.temporal.workflow.WorkflowMethod;
import java.io.File;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.CountDownLatch;

/**
 * The Java SDK side of examples/payload-encryption (README.md there: the shared interface).
 *
 * <pre>
 *   vectors FILE | worker --task-queue Q | run --task-queue Q --workflow-id W --input S
 *   start --task-queue Q --workflow-id W --input S [--workflow-type T] | decode-history --workflow-id W
 * </pre>
 */
public final class Main {
  static final String USAGE =
      "usage: Main COMMAND [flags]\n"
          + "  vectors FILE                                   check the codec against test-vectors.json\n"
          + "  worker --task-queue Q                          run a worker until SIGINT/SIGTERM\n"
          + "  run --task-queue Q --workflow-id W --input S   EncryptedWorkflow(S) with an in-process worker\n"
          + "  start --task-queue Q --workflow-id W --input S [--workflow-type T]   client only\n"
          + "  decode-history --workflow-id W [--run-id R]    every payload of the history, decoded\n"
          + "Keys: CODEC_KEY_FILES / CODEC_WRAPPED_KEY_FILES / CODEC_CURRENT_KEY; connection: TEMPORAL_ADDRESS,\n"
          + "TEMPORAL_NAMESPACE, TEMPORAL_TLS_CA/CERT/KEY/SERVER_NAME (see README.md).";

  @WorkflowInterface
  public interface EncryptedWorkflow {
    @WorkflowMethod(name = "EncryptedWorkflow")
    String run(String input);
  }

  @ActivityInterface
  public interface GreetActivity {
    @ActivityMethod(name = "Greet")
    String greet(String input);
  }

  public static class EncryptedWorkflowImpl implements EncryptedWorkflow {
    private final GreetActivity activity =
        Workflow.newActivityStub(
            GreetActivity.class,
            ActivityOptions.newBuilder().setStartToCloseTimeout(Duration.ofSeconds(30)).build());

    @Override
    public String run(String input) {
      return activity.greet(input);
    }
  }

  public static class GreetActivityImpl implements GreetActivity {
    @Override
    public String greet(String input) {
      return "processed: " + input;
    }
  }

  public static void main(String[] args) {
    if (args.length < 1) {
      System.err.println(USAGE);
      System.exit(2);
    }
    Map<String, String> flags = new HashMap<>();
    List<String> positional = new ArrayList<>();
    for (int i = 1; i < args.length; i++) {
      if (args[i].startsWith("--")) {
        String name = args[i].substring(2);
        int eq = name.indexOf('=');
        if (eq >= 0) {
          flags.put(name.substring(0, eq), name.substring(eq + 1));
        } else if (i + 1 < args.length) {
          flags.put(name, args[++i]);
        } else {
          fail(2, "flag --" + name + " needs a value");
        }
      } else {
        positional.add(args[i]);
      }
    }
    int rc = 0;
    try {
      switch (args[0]) {
        case "vectors":
          if (positional.size() != 1) {
            fail(2, "usage: Main vectors FILE");
          }
          rc = Vectors.check(positional.get(0)) == 0 ? 0 : 1;
          break;
        case "worker":
          worker(require(flags, "task-queue"));
          break;
        case "run":
          run(flags);
          break;
        case "start":
          start(flags);
          break;
        case "decode-history":
          decodeHistory(require(flags, "workflow-id"), flags.get("run-id"));
          break;
        case "help":
        case "-h":
        case "--help":
          System.out.println(USAGE);
          break;
        default:
          fail(2, "unknown command \"" + args[0] + "\"\n" + USAGE);
      }
    } catch (Keys.ConfigException e) {
      fail(1, "error: " + e.getMessage());
    } catch (Exception e) {
      fail(1, "error: " + e);
    }
    System.out.flush();
    // The SDK's gRPC and worker threads are not daemons; leave once the work is done.
    System.exit(rc);
  }

  private static void fail(int rc, String message) {
    System.err.println(message);
    System.exit(rc);
  }

  private static String require(Map<String, String> flags, String name) {
    String v = flags.get(name);
    if (v == null || v.isEmpty()) {
      fail(2, "--" + name + " is required");
    }
    return v;
  }

  private static String env(String name, String def) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? def : v;
  }

  // --- client ---------------------------------------------------------------------------------

  static final class Connected {
    final WorkflowServiceStubs service;
    final WorkflowClient client;
    final EncryptionCodec codec;

    Connected(WorkflowServiceStubs service, WorkflowClient client, EncryptionCodec codec) {
      this.service = service;
      this.client = client;
      this.codec = codec;
    }
  }

  static Connected connect() throws Exception {
    EncryptionCodec codec = Keys.codecFromEnv();
    String address = env("TEMPORAL_ADDRESS", "127.0.0.1:7233");
    WorkflowServiceStubsOptions.Builder opts = WorkflowServiceStubsOptions.newBuilder().setTarget(address);
    String ca = env("TEMPORAL_TLS_CA", "");
    String cert = env("TEMPORAL_TLS_CERT", "");
    String key = env("TEMPORAL_TLS_KEY", "");
    if (!ca.isEmpty() || !cert.isEmpty() || !key.isEmpty()) {
      if (ca.isEmpty() || cert.isEmpty() || key.isEmpty()) {
        throw new Keys.ConfigException("TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY go together");
      }
      for (String[] f : new String[][] {{"TEMPORAL_TLS_CA", ca}, {"TEMPORAL_TLS_CERT", cert}, {"TEMPORAL_TLS_KEY", key}}) {
        if (!new File(f[1]).canRead()) {
          throw new Keys.ConfigException(f[0] + ": cannot read " + f[1]);
        }
      }
      SslContext ssl =
          GrpcSslContexts.forClient().trustManager(new File(ca)).keyManager(new File(cert), new File(key)).build();
      opts.setSslContext(ssl);
      String serverName = env("TEMPORAL_TLS_SERVER_NAME", "");
      if (!serverName.isEmpty()) {
        opts.setChannelInitializer(b -> b.overrideAuthority(serverName));
      }
    }
    WorkflowServiceStubs service = WorkflowServiceStubs.newServiceStubs(opts.build());
    WorkflowClient client =
        WorkflowClient.newInstance(
            service,
            WorkflowClientOptions.newBuilder()
                .setNamespace(env("TEMPORAL_NAMESPACE", "default"))
                .setDataConverter(new CodecDataConverter(DefaultDataConverter.newDefaultInstance(), List.of(codec)))
                .build());
    return new Connected(service, client, codec);
  }

  private static String randomId() {
    return "encrypted-" + UUID.randomUUID().toString().substring(0, 8);
  }

  static void worker(String taskQueue) throws Exception {
    Connected c = connect();
    WorkerFactory factory = WorkerFactory.newInstance(c.client);
    Worker w = factory.newWorker(taskQueue);
    w.registerWorkflowImplementationTypes(EncryptedWorkflowImpl.class);
    w.registerActivitiesImplementations(new GreetActivityImpl());
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  factory.shutdown();
                  factory.awaitTermination(10, java.util.concurrent.TimeUnit.SECONDS);
                  stopped.countDown();
                }));
    factory.start();
    System.err.printf("worker: encrypting with key %s%n", c.codec.current());
    System.out.printf("worker ready: namespace=%s task-queue=%s%n", env("TEMPORAL_NAMESPACE", "default"), taskQueue);
    System.out.flush();
    stopped.await(); // SIGINT/SIGTERM run the shutdown hook
  }

  static String execute(Connected c, Map<String, String> flags, String workflowType) {
    WorkflowStub stub =
        c.client.newUntypedWorkflowStub(
            workflowType,
            WorkflowOptions.newBuilder()
                .setWorkflowId(flags.getOrDefault("workflow-id", randomId()))
                .setTaskQueue(flags.get("task-queue"))
                .setWorkflowExecutionTimeout(Duration.ofMinutes(10))
                .build());
    stub.start(flags.getOrDefault("input", "hello, encrypted world"));
    return stub.getResult(String.class);
  }

  static void run(Map<String, String> flags) throws Exception {
    flags.putIfAbsent("task-queue", randomId());
    Connected c = connect();
    WorkerFactory factory = WorkerFactory.newInstance(c.client);
    Worker w = factory.newWorker(flags.get("task-queue"));
    w.registerWorkflowImplementationTypes(EncryptedWorkflowImpl.class);
    w.registerActivitiesImplementations(new GreetActivityImpl());
    factory.start();
    try {
      System.out.println(execute(c, flags, "EncryptedWorkflow"));
    } finally {
      factory.shutdownNow();
    }
  }

  static void start(Map<String, String> flags) throws Exception {
    require(flags, "task-queue");
    Connected c = connect();
    System.out.println(execute(c, flags, flags.getOrDefault("workflow-type", "EncryptedWorkflow")));
  }

  // --- decode-history -------------------------------------------------------------------------

  /** Every Payload in a message, in field declaration order (map entries by sorted key). */
  static void payloadsOf(Message m, List<Payload> out) {
    if (m instanceof Payload) {
      out.add((Payload) m);
      return;
    }
    for (FieldDescriptor fd : m.getDescriptorForType().getFields()) {
      if (fd.getJavaType() != FieldDescriptor.JavaType.MESSAGE) {
        continue;
      }
      if (fd.isMapField()) {
        TreeMap<String, Message> sorted = new TreeMap<>();
        for (int i = 0; i < m.getRepeatedFieldCount(fd); i++) {
          Message entry = (Message) m.getRepeatedField(fd, i);
          FieldDescriptor k = entry.getDescriptorForType().findFieldByName("key");
          FieldDescriptor v = entry.getDescriptorForType().findFieldByName("value");
          if (v.getJavaType() == FieldDescriptor.JavaType.MESSAGE) {
            sorted.put(String.valueOf(entry.getField(k)), (Message) entry.getField(v));
          }
        }
        sorted.values().forEach(v -> payloadsOf(v, out));
      } else if (fd.isRepeated()) {
        for (int i = 0; i < m.getRepeatedFieldCount(fd); i++) {
          payloadsOf((Message) m.getRepeatedField(fd, i), out);
        }
      } else if (m.hasField(fd)) {
        payloadsOf((Message) m.getField(fd), out);
      }
    }
  }

  static String json(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char ch : s.toCharArray()) {
      if (ch == '"' || ch == '\\') {
        b.append('\\').append(ch);
      } else if (ch < 0x20) {
        b.append(String.format("\\u%04x", (int) ch));
      } else {
        b.append(ch);
      }
    }
    return b.append('"').toString();
  }

  static String payloadJson(Payload p) {
    Base64.Encoder b64 = Base64.getEncoder();
    StringBuilder md = new StringBuilder();
    p.getMetadataMap().entrySet().stream()
        .sorted(Map.Entry.comparingByKey(Comparator.naturalOrder()))
        .forEach(
            e -> {
              if (md.length() > 0) {
                md.append(", ");
              }
              md.append(json(e.getKey())).append(": ").append(json(b64.encodeToString(e.getValue().toByteArray())));
            });
    return "{\"metadata\": {" + md + "}, \"data\": " + json(b64.encodeToString(p.getData().toByteArray())) + "}";
  }

  static void decodeHistory(String workflowId, String runId) throws Exception {
    Connected c = connect();
    List<HistoryEvent> events =
        (runId == null ? c.client.fetchHistory(workflowId) : c.client.fetchHistory(workflowId, runId)).getEvents();
    for (HistoryEvent ev : events) {
      List<Payload> payloads = new ArrayList<>();
      payloadsOf(ev, payloads);
      for (Payload p : payloads) {
        Payload d = c.codec.decode(List.of(p)).get(0);
        System.out.println("{\"event_id\": " + ev.getEventId() + ", \"payload\": " + payloadJson(d) + "}");
      }
    }
  }
}
