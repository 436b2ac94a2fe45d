// Package codec is a Temporal Go SDK converter.PayloadCodec that produces and reads exactly the
// format `temporal-bootstrap codec-server` decrypts (docs/payload-encryption.md, section 1):
//
//   - metadata "encoding" = "binary/encrypted", "encryption-key-id" = the key id (UTF-8);
//   - data = nonce (12 random bytes) || AES-256-GCM(key, nonce, proto.Marshal(original)) || tag (16);
//   - no additional authenticated data;
//   - Decode returns payloads whose encoding is not "binary/encrypted" unchanged.
//
// Every configured key decrypts; only the current one encrypts, so rotation keeps old histories
// readable.
package codec

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"

	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
	"google.golang.org/protobuf/proto"
)

const (
	// Encoding is the metadata "encoding" of an encrypted payload.
	Encoding = "binary/encrypted"
	// KeyIDMetadata is the metadata key naming the key that encrypted the payload.
	KeyIDMetadata = "encryption-key-id"
	// NonceSize is the AES-GCM nonce length (96 bits).
	NonceSize = 12
	// TagSize is the AES-GCM tag length (128 bits).
	TagSize = 16
	// KeySize is the AES-256 key length.
	KeySize = 32
)

// Reasons a payload cannot be decoded (the categories of test-vectors.json "tampered").
const (
	ReasonAuthentication = "authentication"
	ReasonUnknownKey     = "unknown-key"
	ReasonTooShort       = "too-short"
	ReasonNotAPayload    = "not-a-payload"
)

// DecodeError says why an encrypted payload could not be decoded. It never holds plaintext or keys.
type DecodeError struct {
	Reason  string
	Message string
}

func (e *DecodeError) Error() string { return e.Message }

// Codec is an AES-256-GCM payload codec with named keys.
type Codec struct {
	aeads   map[string]cipher.AEAD
	current string
}

var _ converter.PayloadCodec = (*Codec)(nil)

// New makes a codec from key id -> 32-byte key; current names the key that encrypts.
func New(keys map[string][]byte, current string) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("codec: no keys")
	}
	c := &Codec{aeads: map[string]cipher.AEAD{}, current: current}
	for id, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("codec: key %q has %d bytes, expected %d", id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("codec: key %q: %w", id, err)
		}
		gcm, err := cipher.NewGCM(block) // 12-byte nonce, 16-byte tag
		if err != nil {
			return nil, fmt.Errorf("codec: key %q: %w", id, err)
		}
		c.aeads[id] = gcm
	}
	if _, ok := c.aeads[current]; !ok {
		return nil, fmt.Errorf("codec: the current key %q is not among the keys (%v)", current, c.KeyIDs())
	}
	return c, nil
}

// KeyIDs lists the configured key ids, sorted.
func (c *Codec) KeyIDs() []string {
	ids := make([]string, 0, len(c.aeads))
	for id := range c.aeads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Current is the id of the key that encrypts.
func (c *Codec) Current() string { return c.current }

// Encode encrypts every payload with the current key and a fresh random nonce from crypto/rand.
func (c *Codec) Encode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		nonce := make([]byte, NonceSize)
		if _, err := rand.Read(nonce); err != nil {
			return nil, fmt.Errorf("codec: no random nonce: %w", err)
		}
		enc, err := c.seal(p, c.current, nonce)
		if err != nil {
			return nil, err
		}
		out[i] = enc
	}
	return out, nil
}

// seal encrypts one payload with the given key and nonce. Production code reaches it only through
// Encode (a fresh random nonce each time); the test vectors call it with their fixed nonces.
func (c *Codec) seal(p *commonpb.Payload, keyID string, nonce []byte) (*commonpb.Payload, error) {
	aead, ok := c.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("codec: unknown key id %q", keyID)
	}
	if len(nonce) != NonceSize {
		return nil, fmt.Errorf("codec: nonce of %d bytes, expected %d", len(nonce), NonceSize)
	}
	plain, err := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("codec: cannot serialise the payload: %w", err)
	}
	data := make([]byte, 0, NonceSize+len(plain)+TagSize)
	data = append(data, nonce...)
	data = aead.Seal(data, nonce, plain, nil) // nonce || ciphertext || tag
	return &commonpb.Payload{
		Metadata: map[string][]byte{
			"encoding":    []byte(Encoding),
			KeyIDMetadata: []byte(keyID),
		},
		Data: data,
	}, nil
}

// Decode decrypts payloads encrypted with any configured key and returns all others unchanged.
// One payload that cannot be decrypted fails the whole call with a *DecodeError.
func (c *Codec) Decode(payloads []*commonpb.Payload) ([]*commonpb.Payload, error) {
	out := make([]*commonpb.Payload, len(payloads))
	for i, p := range payloads {
		d, err := c.open(p)
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}

func (c *Codec) open(p *commonpb.Payload) (*commonpb.Payload, error) {
	if string(p.GetMetadata()["encoding"]) != Encoding {
		return p, nil
	}
	keyID := string(p.GetMetadata()[KeyIDMetadata])
	aead, ok := c.aeads[keyID]
	if !ok {
		return nil, &DecodeError{ReasonUnknownKey, fmt.Sprintf("codec: unknown encryption key id %q", keyID)}
	}
	data := p.GetData()
	if len(data) < NonceSize+TagSize {
		return nil, &DecodeError{ReasonTooShort, fmt.Sprintf(
			"codec: encrypted data of %d bytes is shorter than nonce and tag (%d)", len(data), NonceSize+TagSize)}
	}
	plain, err := aead.Open(nil, data[:NonceSize], data[NonceSize:], nil)
	if err != nil {
		return nil, &DecodeError{ReasonAuthentication, fmt.Sprintf(
			"codec: payload does not authenticate under key %q (tampered, or another key with this id)", keyID)}
	}
	var out commonpb.Payload
	if err := proto.Unmarshal(plain, &out); err != nil {
		return nil, &DecodeError{ReasonNotAPayload, "codec: the decrypted bytes are not a Payload: " + err.Error()}
	}
	return &out, nil
}
