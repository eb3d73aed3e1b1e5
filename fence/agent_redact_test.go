//go:build unix

package fence

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestAgentOutputRedactedBeforeTail: an agent that echoes its options (as some do on a
// parse error) and then so much output that the quoted tail starts inside the password
// must not show any part of it: redaction runs on the whole output, then it is cut.
func TestAgentOutputRedactedBeforeTail(t *testing.T) {
	const secret = "S3cr3t-pw-ZQ"
	tests := []struct {
		name   string
		filler int // bytes of output after the echoed options
	}{
		{"secret whole in tail", 100},
		{"tail starts inside secret", 503},
		{"secret before tail", 2000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			script := filepath.Join(t.TempDir(), "fence_echo")
			body := "#!/bin/sh\ncat\nhead -c " + strconv.Itoa(tc.filler) + " /dev/zero | tr '\\0' y\nexit 1\n"
			if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			a := &Agent{Path: script, Args: map[string]string{"login": "admin", "passwd": secret}}
			err := a.On(ctx, "node-b")
			if err == nil {
				t.Fatal("an agent exiting 1 succeeded")
			}
			// The secret is the last option line; %q shows its newline as \n.
			for i := 3; i <= len(secret); i++ {
				if suffix := secret[len(secret)-i:]; strings.Contains(err.Error(), suffix+`\n`) {
					t.Fatalf("error shows %q of the secret: %v", suffix, err)
				}
			}
		})
	}
}
