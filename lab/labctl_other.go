//go:build !linux

package lab

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"
)

var errNoLabHere = fmt.Errorf("%w: the namespace lab", ErrUnsupported)

// ServeOptions configure Serve.
type ServeOptions struct {
	Binary string
	Name   string
	TTL    time.Duration
	Log    *zap.Logger
}

// LabDir needs Linux.
func LabDir(string) (string, error) { return "", errNoLabHere }

// Serve needs Linux.
func Serve(context.Context, ServeOptions) error { return errNoLabHere }

// Up needs Linux.
func Up(context.Context, string, string, time.Duration) error { return errNoLabHere }

// Down needs Linux.
func Down(context.Context, string, io.Writer) error { return errNoLabHere }

// SweepOrphans needs Linux.
func SweepOrphans(context.Context, io.Writer) error { return errNoLabHere }

// Labs is empty: no lab can run here.
func Labs() []string { return nil }

// LabState is what a lab records about itself (Linux only).
type LabState struct {
	Prefix, Cluster, Endpoint, EtcdNS, ClientNS string
	PID                                         int
	Started                                     time.Time
}

// Attach needs Linux.
func Attach(context.Context, string) (*Farm, LabState, error) { return nil, LabState{}, errNoLabHere }
