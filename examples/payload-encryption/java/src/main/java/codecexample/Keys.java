package codecexample;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Keys from the environment (examples/payload-encryption/README.md): CODEC_KEY_FILES (key files of
 * `temporal-bootstrap codec keygen`), CODEC_WRAPPED_KEY_FILES (Transit ciphertexts, unwrapped at
 * start through $VAULT_ADDR and kept in memory only), CODEC_CURRENT_KEY.
 */
final class Keys {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Keys() {}

  /** A configuration error; the message names the variable. */
  static final class ConfigException extends Exception {
    ConfigException(String message) {
      super(message);
    }
  }

  static EncryptionCodec codecFromEnv() throws ConfigException {
    Map<String, byte[]> keys = new LinkedHashMap<>();
    for (String[] pair : pairs("CODEC_KEY_FILES")) {
      byte[] key = loadKeyFile("CODEC_KEY_FILES", pair[0], Path.of(pair[1]));
      put(keys, "CODEC_KEY_FILES", pair[0], key);
    }
    List<String[]> wrapped = pairs("CODEC_WRAPPED_KEY_FILES");
    if (!wrapped.isEmpty()) {
      Transit transit = Transit.fromEnv();
      for (String[] pair : wrapped) {
        String ciphertext;
        try {
          ciphertext = Files.readString(Path.of(pair[1]), StandardCharsets.UTF_8).trim();
        } catch (IOException e) {
          throw new ConfigException(
              "CODEC_WRAPPED_KEY_FILES: key \"" + pair[0] + "\": cannot read " + pair[1] + ": " + e);
        }
        byte[] key = transit.unwrap("CODEC_WRAPPED_KEY_FILES: key \"" + pair[0] + "\" (" + pair[1] + ")", ciphertext);
        put(keys, "CODEC_WRAPPED_KEY_FILES", pair[0], key);
      }
    }
    if (keys.isEmpty()) {
      throw new ConfigException(
          "no keys: set CODEC_KEY_FILES and/or CODEC_WRAPPED_KEY_FILES (id=path[,id=path...])");
    }
    String current = System.getenv("CODEC_CURRENT_KEY");
    if (current == null || current.isEmpty()) {
      current = keys.keySet().iterator().next();
    }
    if (!keys.containsKey(current)) {
      throw new ConfigException(
          "CODEC_CURRENT_KEY=\"" + current + "\" is not among the configured key ids " + keys.keySet());
    }
    return new EncryptionCodec(keys, current);
  }

  private static void put(Map<String, byte[]> keys, String variable, String id, byte[] key)
      throws ConfigException {
    if (keys.containsKey(id)) {
      throw new ConfigException(
          variable
              + ": key id \""
              + id
              + "\" is listed twice (ids must be unique across CODEC_KEY_FILES and CODEC_WRAPPED_KEY_FILES)");
    }
    keys.put(id, key);
  }

  private static List<String[]> pairs(String variable) throws ConfigException {
    List<String[]> out = new ArrayList<>();
    String value = System.getenv(variable);
    if (value == null) {
      return out;
    }
    for (String item : value.split(",")) {
      item = item.trim();
      if (item.isEmpty()) {
        continue;
      }
      int eq = item.indexOf('=');
      if (eq <= 0 || eq == item.length() - 1) {
        throw new ConfigException(variable + ": \"" + item + "\" is not id=path");
      }
      out.add(new String[] {item.substring(0, eq).trim(), item.substring(eq + 1).trim()});
    }
    return out;
  }

  /** A key file of `temporal-bootstrap codec keygen`: one line of standard base64, 32 bytes. */
  static byte[] loadKeyFile(String variable, String id, Path path) throws ConfigException {
    String where = variable + ": key \"" + id + "\": " + path;
    String text;
    try {
      text = Files.readString(path, StandardCharsets.US_ASCII).trim();
    } catch (IOException e) {
      throw new ConfigException(where + ": cannot read the key file (" + e + ")");
    }
    byte[] key;
    try {
      key = Base64.getDecoder().decode(text);
    } catch (IllegalArgumentException e) {
      throw new ConfigException(where + ": not standard base64 (" + e.getMessage() + ")");
    }
    if (key.length != EncryptionCodec.KEY_SIZE) {
      throw new ConfigException(
          where + ": expected " + EncryptionCodec.KEY_SIZE + " key bytes, found " + key.length);
    }
    return key;
  }

  /** OpenBao/Vault Transit: POST $VAULT_ADDR/v1/$mount/decrypt/$key. */
  static final class Transit {
    final String addr;
    final String token;
    final String mount;
    final String key;
    final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    private Transit(String addr, String token, String mount, String key) {
      this.addr = addr;
      this.token = token;
      this.mount = mount;
      this.key = key;
    }

    static Transit fromEnv() throws ConfigException {
      String addr = env("VAULT_ADDR");
      String token = env("VAULT_TOKEN");
      String key = env("CODEC_TRANSIT_KEY");
      String mount = System.getenv().getOrDefault("CODEC_TRANSIT_MOUNT", "");
      return new Transit(
          addr.replaceAll("/+$", ""), token, mount.isEmpty() ? "transit" : mount, key);
    }

    private static String env(String name) throws ConfigException {
      String v = System.getenv(name);
      if (v == null || v.isEmpty()) {
        throw new ConfigException("CODEC_WRAPPED_KEY_FILES is set but " + name + " is empty");
      }
      return v;
    }

    byte[] unwrap(String where, String ciphertext) throws ConfigException {
      if (!ciphertext.startsWith("vault:")) {
        throw new ConfigException(where + ": not a Transit ciphertext (expected vault:v<N>:...)");
      }
      String url = addr + "/v1/" + mount + "/decrypt/" + key;
      try {
        String body = JSON.writeValueAsString(Map.of("ciphertext", ciphertext));
        HttpRequest req =
            HttpRequest.newBuilder(URI.create(url))
                .timeout(Duration.ofSeconds(30))
                .header("X-Vault-Token", token)
                .header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body))
                .build();
        HttpResponse<String> resp = http.send(req, HttpResponse.BodyHandlers.ofString());
        if (resp.statusCode() != 200) {
          JsonNode errors = null;
          try {
            errors = JSON.readTree(resp.body()).get("errors");
          } catch (IOException ignored) {
            // not JSON: the status says enough
          }
          throw new ConfigException(
              where + ": Transit decrypt (" + url + "): HTTP " + resp.statusCode() + " " + errors);
        }
        String plaintext = JSON.readTree(resp.body()).path("data").path("plaintext").asText("");
        byte[] k = Base64.getDecoder().decode(plaintext);
        if (k.length != EncryptionCodec.KEY_SIZE) {
          throw new ConfigException(
              where + ": the unwrapped key has " + k.length + " bytes, expected " + EncryptionCodec.KEY_SIZE);
        }
        return k;
      } catch (IOException | IllegalArgumentException e) {
        throw new ConfigException(where + ": Transit decrypt (" + url + "): " + e);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new ConfigException(where + ": interrupted");
      }
    }
  }
}
