package codec

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// FromEnv builds the codec from the environment (examples/payload-encryption/README.md):
//
//	CODEC_KEY_FILES          id=path[,id=path...]: key files of `temporal-bootstrap codec keygen`
//	CODEC_WRAPPED_KEY_FILES  id=path[,...]: Transit ciphertexts (vault:v1:...) of data keys,
//	                         unwrapped at start through $VAULT_ADDR (kept in memory only)
//	CODEC_CURRENT_KEY        the id that encrypts (default: the first listed)
//	VAULT_ADDR, VAULT_TOKEN, CODEC_TRANSIT_MOUNT (default transit), CODEC_TRANSIT_KEY
func FromEnv() (*Codec, error) {
	keys := map[string][]byte{}
	var order []string
	add := func(variable, id string, key []byte) error {
		if _, dup := keys[id]; dup {
			return fmt.Errorf("%s: key id %q is listed twice (ids must be unique across CODEC_KEY_FILES and CODEC_WRAPPED_KEY_FILES)", variable, id)
		}
		keys[id] = key
		order = append(order, id)
		return nil
	}

	plain, err := parsePairs("CODEC_KEY_FILES")
	if err != nil {
		return nil, err
	}
	for _, kp := range plain {
		key, err := LoadKeyFile(kp.path)
		if err != nil {
			return nil, fmt.Errorf("CODEC_KEY_FILES: key %q: %w", kp.id, err)
		}
		if err := add("CODEC_KEY_FILES", kp.id, key); err != nil {
			return nil, err
		}
	}

	wrapped, err := parsePairs("CODEC_WRAPPED_KEY_FILES")
	if err != nil {
		return nil, err
	}
	if len(wrapped) > 0 {
		transit, err := transitFromEnv()
		if err != nil {
			return nil, err
		}
		for _, kp := range wrapped {
			raw, err := os.ReadFile(kp.path)
			if err != nil {
				return nil, fmt.Errorf("CODEC_WRAPPED_KEY_FILES: key %q: %w", kp.id, err)
			}
			key, err := transit.unwrap(strings.TrimSpace(string(raw)))
			if err != nil {
				return nil, fmt.Errorf("CODEC_WRAPPED_KEY_FILES: key %q (%s): %w", kp.id, kp.path, err)
			}
			if err := add("CODEC_WRAPPED_KEY_FILES", kp.id, key); err != nil {
				return nil, err
			}
		}
	}

	if len(order) == 0 {
		return nil, fmt.Errorf("no keys: set CODEC_KEY_FILES and/or CODEC_WRAPPED_KEY_FILES (id=path[,id=path...])")
	}
	current := os.Getenv("CODEC_CURRENT_KEY")
	if current == "" {
		current = order[0]
	}
	if _, ok := keys[current]; !ok {
		return nil, fmt.Errorf("CODEC_CURRENT_KEY=%q is not among the configured key ids %v", current, order)
	}
	return New(keys, current)
}

type keyPath struct{ id, path string }

func parsePairs(variable string) ([]keyPath, error) {
	var out []keyPath
	for _, item := range strings.Split(os.Getenv(variable), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, path, ok := strings.Cut(item, "=")
		if !ok || strings.TrimSpace(id) == "" || strings.TrimSpace(path) == "" {
			return nil, fmt.Errorf("%s: %q is not id=path", variable, item)
		}
		out = append(out, keyPath{strings.TrimSpace(id), strings.TrimSpace(path)})
	}
	return out, nil
}

// LoadKeyFile reads a key file written by `temporal-bootstrap codec keygen`: one line of standard
// base64 holding 32 bytes.
func LoadKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the key file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("%s: not standard base64: %v", path, err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("%s: expected %d key bytes, found %d", path, KeySize, len(key))
	}
	return key, nil
}

type transitClient struct {
	addr, token, mount, key string
	http                    *http.Client
}

func transitFromEnv() (*transitClient, error) {
	t := &transitClient{
		addr:  strings.TrimRight(os.Getenv("VAULT_ADDR"), "/"),
		token: os.Getenv("VAULT_TOKEN"),
		mount: os.Getenv("CODEC_TRANSIT_MOUNT"),
		key:   os.Getenv("CODEC_TRANSIT_KEY"),
		http:  &http.Client{Timeout: 30 * time.Second},
	}
	if t.mount == "" {
		t.mount = "transit"
	}
	for name, v := range map[string]string{"VAULT_ADDR": t.addr, "VAULT_TOKEN": t.token, "CODEC_TRANSIT_KEY": t.key} {
		if v == "" {
			return nil, fmt.Errorf("CODEC_WRAPPED_KEY_FILES is set but %s is empty", name)
		}
	}
	return t, nil
}

// unwrap asks Transit to decrypt a wrapped data key; the plaintext key stays in memory.
func (t *transitClient) unwrap(ciphertext string) ([]byte, error) {
	if !strings.HasPrefix(ciphertext, "vault:") {
		return nil, fmt.Errorf("not a Transit ciphertext (expected vault:v<N>:...)")
	}
	body, _ := json.Marshal(map[string]string{"ciphertext": ciphertext})
	url := fmt.Sprintf("%s/v1/%s/decrypt/%s", t.addr, t.mount, t.key)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-Vault-Token", t.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := t.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("Transit decrypt (%s): %w", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Errors []string }
		_ = json.Unmarshal(raw, &e)
		return nil, fmt.Errorf("Transit decrypt (%s): HTTP %d %v", url, resp.StatusCode, e.Errors)
	}
	var out struct {
		Data struct {
			Plaintext string `json:"plaintext"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("Transit decrypt: unexpected answer: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(out.Data.Plaintext)
	if err != nil {
		return nil, fmt.Errorf("Transit decrypt: plaintext is not base64: %w", err)
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("the unwrapped key has %d bytes, expected %d", len(key), KeySize)
	}
	return key, nil
}
