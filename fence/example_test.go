package fence_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/understudy-ha/understudy/fence"
)

func ExampleNewKey() {
	k, err := fence.NewKey("prod", 2)
	if err != nil {
		panic(err)
	}
	fmt.Println(k, k.NodeID(), k.InCluster("prod"), k.InCluster("staging"))
	// Output: 0x6754af9600000002 2 true false
}

func ExampleParseKey() {
	k, err := fence.ParseKey("5a1e93c000000002") // as sg_persist prints it
	fmt.Println(k, err)
	_, err = fence.ParseKey("0x0")
	fmt.Println(errors.Is(err, fence.ErrInvalidKey))
	// Output:
	// 0x5a1e93c000000002 <nil>
	// true
}

// A standby that won the claim of a role fences the previous holder on
// every device of the role before it mounts anything.
func ExampleDevice_Fence() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	paths, err := fence.OpenPaths("/dev/mapper/shared") // every path of the LU
	if err != nil {
		fmt.Println(err)
		return
	}
	defer fence.CloseAll(paths)
	dev := &fence.Device{Name: "/dev/mapper/shared", Paths: paths}
	self, _ := fence.NewKey("prod", 4)
	victim, _ := fence.NewKey("prod", 1)
	if err := dev.Fence(ctx, self, victim); err != nil {
		// errors.Is(err, fence.ErrFenceUnverified): do not touch the storage.
		fmt.Println(err)
		return
	}
	// The target now rejects node 1's writes with RESERVATION CONFLICT.
}

// The active holder watches its own key and demotes itself at once when
// another node fenced it.
func ExampleWatchdog() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var dev *fence.Device // opened as in ExampleDevice_Fence
	self, _ := fence.NewKey("prod", 1)
	if dev == nil {
		return
	}
	wd := &fence.Watchdog{Device: dev, Key: self, Interval: time.Second}
	for err := range wd.Run(ctx) { // closed when ctx is cancelled
		fmt.Println("fenced or blind, demoting:", err)
	}
}
