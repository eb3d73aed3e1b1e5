package heartbeat

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a Service's send loop or receive goroutine outlives
// the test that started it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
