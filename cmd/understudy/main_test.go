package main

import (
	"testing"

	"go.uber.org/goleak"
)

// Commands start goroutines (watches, the health server, etcd clients): every one must
// be gone when its command returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
