package codec

import (
	"bytes"
	"testing"

	commonpb "go.temporal.io/api/common/v1"
)

func TestVectors(t *testing.T) {
	var out bytes.Buffer
	if err := CheckVectors("../../vectors/test-vectors.json", &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	t.Log(out.String())
}

func TestEncodeUsesFreshNonces(t *testing.T) {
	c, err := New(map[string][]byte{"k": bytes.Repeat([]byte{7}, 32)}, "k")
	if err != nil {
		t.Fatal(err)
	}
	p := &commonpb.Payload{Metadata: map[string][]byte{"encoding": []byte("json/plain")}, Data: []byte(`"x"`)}
	enc, err := c.Encode([]*commonpb.Payload{p, p})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(enc[0].Data[:NonceSize], enc[1].Data[:NonceSize]) {
		t.Fatal("two encodings share a nonce")
	}
	dec, err := c.Decode(enc)
	if err != nil || !samePayload(dec[0], p) || !samePayload(dec[1], p) {
		t.Fatalf("round trip: %v", err)
	}
}
