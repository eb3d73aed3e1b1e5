package iscsi

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func FuzzDecodePDU(f *testing.F) {
	p := newPDU(opDataIn, false)
	p.data = []byte("hello")
	for _, hd := range []bool{false, true} {
		bufs, _ := p.encode(hd, hd)
		var b bytes.Buffer
		_, _ = bufs.WriteTo(&b)
		f.Add(b.Bytes(), hd, hd)
	}
	f.Add(make([]byte, 47), false, false)
	f.Fuzz(func(t *testing.T, in []byte, hd, dd bool) {
		q, err := readPDU(bytes.NewReader(in), hd, dd, 1<<16)
		if err != nil {
			return
		}
		// What decodes must re-encode to the bytes it came from.
		bufs, err := q.encode(hd, dd)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var b bytes.Buffer
		_, _ = bufs.WriteTo(&b)
		if n := b.Len(); n > len(in) || (!bytes.Equal(b.Bytes()[:bhsLen], in[:bhsLen])) {
			t.Fatalf("re-encoded header differs")
		}
	})
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"iscsi://127.0.0.1/iqn.2026-11.dev.understudy:x/1",
		"iscsi://u:secret@[::1]:3260/iqn.a:b/0",
		"iscsi://h:0/eui.0123/16383",
		"iscsi://u:p@/x/y",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseURL(s)
		if err != nil {
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("error %v does not match ErrBadURL", err)
			}
			return
		}
		if tg.LUN > maxLUN || tg.Addr == "" || checkName(tg.IQN) != nil {
			t.Fatalf("accepted invalid target %+v", tg)
		}
		if tg.Secret != "" && len(tg.Secret) > 3 && strings.Contains(tg.String(), tg.Secret) && !strings.Contains(tg.IQN+tg.Addr+tg.User, tg.Secret) {
			t.Fatalf("String leaks the secret: %s", tg)
		}
	})
}

func FuzzParseText(f *testing.F) {
	f.Add([]byte("InitiatorName=iqn.a:b\x00AuthMethod=CHAP,None\x00"))
	f.Add([]byte("A=\x00\x00"))
	f.Add([]byte("=\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		kvs, err := parseText(in)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not match ErrProtocol", err)
			}
			return
		}
		again, err := parseText(encodeText(kvs))
		if err != nil || len(again) != len(kvs) {
			t.Fatalf("round trip: %v, %d vs %d pairs", err, len(again), len(kvs))
		}
		for i := range kvs {
			if again[i] != kvs[i] {
				t.Fatalf("round trip pair %d: %q vs %q", i, again[i], kvs[i])
			}
		}
		p := defaultParams(8192)
		for _, kv := range kvs {
			_, _ = p.applyAnswer(kv.key, kv.value, "") // must not panic
		}
	})
}
