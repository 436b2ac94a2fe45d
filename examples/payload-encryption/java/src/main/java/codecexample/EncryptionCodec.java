package codecexample;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import io.temporal.api.common.v1.Payload;
import io.temporal.payload.codec.PayloadCodec;
import io.temporal.payload.codec.PayloadCodecException;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * AES-256-GCM payload codec producing exactly the format {@code temporal-bootstrap codec-server}
 * decrypts (docs/payload-encryption.md, section 1): metadata {@code encoding=binary/encrypted} and
 * {@code encryption-key-id=<id>}; data = nonce (12 random bytes) || ciphertext || tag (16 bytes) of
 * the original Payload's protobuf bytes, no additional authenticated data. Payloads that are not
 * {@code binary/encrypted} are decoded unchanged. Every key decrypts; only the current one encrypts.
 */
public final class EncryptionCodec implements PayloadCodec {
  public static final String ENCODING = "binary/encrypted";
  public static final String KEY_ID = "encryption-key-id";
  public static final int NONCE_SIZE = 12;
  public static final int TAG_BITS = 128;
  public static final int KEY_SIZE = 32;

  /** Why an encrypted payload could not be decoded (never holds plaintext or keys). */
  public static final class DecodeException extends PayloadCodecException {
    public final String reason; // authentication, unknown-key, too-short, not-a-payload

    DecodeException(String reason, String message) {
      super(message);
      this.reason = reason;
    }
  }

  private static final SecureRandom RANDOM = new SecureRandom();

  private final Map<String, SecretKeySpec> keys = new TreeMap<>();
  private final String current;

  public EncryptionCodec(Map<String, byte[]> keys, String current) {
    if (keys.isEmpty()) {
      throw new IllegalArgumentException("codec: no keys");
    }
    keys.forEach(
        (id, key) -> {
          if (key.length != KEY_SIZE) {
            throw new IllegalArgumentException(
                "codec: key \"" + id + "\" has " + key.length + " bytes, expected " + KEY_SIZE);
          }
          this.keys.put(id, new SecretKeySpec(key, "AES"));
        });
    if (!this.keys.containsKey(current)) {
      throw new IllegalArgumentException(
          "codec: the current key \"" + current + "\" is not among the keys " + this.keys.keySet());
    }
    this.current = current;
  }

  public String current() {
    return current;
  }

  /** Encrypts every payload with the current key and a fresh nonce from SecureRandom. */
  @Override
  public List<Payload> encode(List<Payload> payloads) {
    List<Payload> out = new ArrayList<>(payloads.size());
    for (Payload p : payloads) {
      byte[] nonce = new byte[NONCE_SIZE];
      RANDOM.nextBytes(nonce);
      out.add(seal(p, current, nonce));
    }
    return out;
  }

  /**
   * Encrypts one payload with the given key and nonce. Production code reaches it only through
   * {@link #encode} (a fresh random nonce each time); {@link Vectors} (same package) calls it with
   * the fixed nonces of the test vectors.
   */
  Payload seal(Payload p, String keyId, byte[] nonce) {
    SecretKeySpec key = keys.get(keyId);
    if (key == null) {
      throw new PayloadCodecException("codec: unknown key id \"" + keyId + "\"");
    }
    if (nonce.length != NONCE_SIZE) {
      throw new PayloadCodecException("codec: nonce of " + nonce.length + " bytes");
    }
    try {
      Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
      cipher.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(TAG_BITS, nonce));
      byte[] sealed = cipher.doFinal(p.toByteArray()); // ciphertext || tag
      return Payload.newBuilder()
          .putMetadata("encoding", ByteString.copyFromUtf8(ENCODING))
          .putMetadata(KEY_ID, ByteString.copyFromUtf8(keyId))
          .setData(ByteString.copyFrom(nonce).concat(ByteString.copyFrom(sealed)))
          .build();
    } catch (GeneralSecurityException e) {
      throw new PayloadCodecException("codec: encryption failed", e);
    }
  }

  /** Decrypts ours, returns everything else unchanged; one failure fails the whole call. */
  @Override
  public List<Payload> decode(List<Payload> payloads) {
    List<Payload> out = new ArrayList<>(payloads.size());
    for (Payload p : payloads) {
      out.add(open(p));
    }
    return out;
  }

  private Payload open(Payload p) {
    ByteString encoding = p.getMetadataOrDefault("encoding", ByteString.EMPTY);
    if (!encoding.toStringUtf8().equals(ENCODING)) {
      return p;
    }
    String keyId = p.getMetadataOrDefault(KEY_ID, ByteString.EMPTY).toStringUtf8();
    SecretKeySpec key = keys.get(keyId);
    if (key == null) {
      throw new DecodeException("unknown-key", "codec: unknown encryption key id \"" + keyId + "\"");
    }
    byte[] data = p.getData().toByteArray();
    if (data.length < NONCE_SIZE + TAG_BITS / 8) {
      throw new DecodeException(
          "too-short",
          "codec: encrypted data of " + data.length + " bytes is shorter than nonce and tag");
    }
    byte[] plain;
    try {
      Cipher cipher = Cipher.getInstance("AES/GCM/NoPadding");
      cipher.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(TAG_BITS, data, 0, NONCE_SIZE));
      plain = cipher.doFinal(data, NONCE_SIZE, data.length - NONCE_SIZE);
    } catch (AEADBadTagException e) {
      throw new DecodeException(
          "authentication",
          "codec: payload does not authenticate under key \""
              + keyId
              + "\" (tampered, or another key with this id)");
    } catch (GeneralSecurityException e) {
      throw new PayloadCodecException("codec: decryption failed", e);
    }
    try {
      return Payload.parseFrom(plain);
    } catch (InvalidProtocolBufferException e) {
      throw new DecodeException(
          "not-a-payload", "codec: the decrypted bytes are not a Payload: " + e.getMessage());
    }
  }
}
