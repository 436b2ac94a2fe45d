package codecexample;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.protobuf.ByteString;
import io.temporal.api.common.v1.Payload;
import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Checks the codec against examples/payload-encryption/vectors/test-vectors.json. */
final class Vectors {
  private Vectors() {}

  static Payload payload(JsonNode j) {
    Payload.Builder b = Payload.newBuilder();
    Iterator<Map.Entry<String, JsonNode>> it = j.path("metadata").fields();
    while (it.hasNext()) {
      Map.Entry<String, JsonNode> e = it.next();
      b.putMetadata(e.getKey(), ByteString.copyFrom(Base64.getDecoder().decode(e.getValue().asText())));
    }
    return b.setData(ByteString.copyFrom(Base64.getDecoder().decode(j.path("data").asText("")))).build();
  }

  /** Fields compared (metadata as a map, data), not serialised bytes. */
  static boolean same(Payload a, Payload b) {
    return a.getMetadataMap().equals(b.getMetadataMap()) && a.getData().equals(b.getData());
  }

  /** Returns the number of failed cases; prints one line per group and one per failure. */
  static int check(String path) throws IOException {
    JsonNode v = new ObjectMapper().readTree(new File(path));
    Map<String, byte[]> keys = new LinkedHashMap<>();
    v.path("keys").fields().forEachRemaining(e -> keys.put(e.getKey(), Base64.getDecoder().decode(e.getValue().asText())));
    EncryptionCodec codec = new EncryptionCodec(keys, keys.keySet().iterator().next());
    List<String> failures = new ArrayList<>();
    HexFormat hex = HexFormat.of();

    int before = failures.size();
    int n = 0;
    for (JsonNode e : v.path("encrypt")) {
      n++;
      String name = "encrypt \"" + e.path("name").asText() + "\": ";
      Payload p = payload(e.path("payload"));
      Payload want = payload(e.path("encrypted"));
      if (!hex.formatHex(p.toByteArray()).equals(e.path("payload_proto_hex").asText())) {
        failures.add(name + "serialisation differs from payload_proto_hex");
      }
      Payload got = codec.seal(p, e.path("key_id").asText(), hex.parseHex(e.path("nonce_hex").asText()));
      if (!same(got, want)) {
        failures.add(name + "sealed payload differs from encrypted");
      }
      try {
        if (!same(codec.decode(List.of(want)).get(0), p)) {
          failures.add(name + "decoding encrypted does not give payload");
        }
      } catch (RuntimeException ex) {
        failures.add(name + "decoding encrypted failed: " + ex.getMessage());
      }
    }
    report("encrypt", n, failures.size() - before);

    before = failures.size();
    n = 0;
    for (JsonNode e : v.path("decrypt_only")) {
      n++;
      String name = "decrypt_only \"" + e.path("name").asText() + "\": ";
      try {
        if (!same(codec.decode(List.of(payload(e.path("encrypted")))).get(0), payload(e.path("payload")))) {
          failures.add(name + "decoding does not give payload");
        }
      } catch (RuntimeException ex) {
        failures.add(name + "decoding failed: " + ex.getMessage());
      }
    }
    report("decrypt_only", n, failures.size() - before);

    before = failures.size();
    n = 0;
    for (JsonNode e : v.path("pass_through")) {
      String name = "pass_through #" + n++ + ": ";
      Payload p = payload(e);
      try {
        if (!same(codec.decode(List.of(p)).get(0), p)) {
          failures.add(name + "not returned unchanged");
        }
      } catch (RuntimeException ex) {
        failures.add(name + "decoding failed: " + ex.getMessage());
      }
    }
    report("pass_through", n, failures.size() - before);

    before = failures.size();
    n = 0;
    for (JsonNode e : v.path("tampered")) {
      n++;
      String name = "tampered \"" + e.path("name").asText() + "\": ";
      String reason = e.path("reason").asText();
      try {
        codec.decode(List.of(payload(e.path("encrypted"))));
        failures.add(name + "decoded, expected a " + reason + " failure");
      } catch (EncryptionCodec.DecodeException ex) {
        if (!ex.reason.equals(reason)) {
          failures.add(name + "failed as " + ex.reason + ", expected " + reason + " (" + ex.getMessage() + ")");
        }
      } catch (RuntimeException ex) {
        failures.add(name + "failed without a reason: " + ex);
      }
    }
    report("tampered", n, failures.size() - before);

    for (String f : failures) {
      System.out.println("  FAILED " + f);
    }
    return failures.size();
  }

  private static void report(String group, int total, int bad) {
    System.out.printf("%s: %d/%d %s%n", group, total - bad, total, bad == 0 ? "ok" : "FAILED");
  }
}
