//go:build !linux

package tgtdtest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
