package iscsi

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	const iqn = "iqn.2026-11.dev.understudy:disk1"
	tests := []struct {
		name     string
		in       string
		want     Target
		wantPart string // part named in the error
	}{
		{name: "full", in: "iscsi://alice:s3cret@127.0.0.1:3261/" + iqn + "/2",
			want: Target{Addr: "127.0.0.1:3261", IQN: iqn, LUN: 2, User: "alice", Secret: "s3cret"}},
		{name: "default port", in: "iscsi://127.0.0.1/" + iqn + "/0", want: Target{Addr: "127.0.0.1:3260", IQN: iqn}},
		{name: "ipv6", in: "iscsi://[::1]:3262/" + iqn + "/1", want: Target{Addr: "[::1]:3262", IQN: iqn, LUN: 1}},
		{name: "ipv6 default port", in: "iscsi://[::1]/" + iqn + "/1", want: Target{Addr: "[::1]:3260", IQN: iqn, LUN: 1}},
		{name: "user only", in: "iscsi://bob@h/" + iqn + "/1", want: Target{Addr: "h:3260", IQN: iqn, LUN: 1, User: "bob"}},
		{name: "escaped secret", in: "iscsi://u:a%2Fb%40c@h/" + iqn + "/1", want: Target{Addr: "h:3260", IQN: iqn, LUN: 1, User: "u", Secret: "a/b@c"}},
		{name: "max lun", in: "iscsi://h/" + iqn + "/16383", want: Target{Addr: "h:3260", IQN: iqn, LUN: 16383}},
		{name: "eui name", in: "iscsi://h/eui.02004567a425678d/1", want: Target{Addr: "h:3260", IQN: "eui.02004567a425678d", LUN: 1}},
		{name: "wrong scheme", in: "http://h/" + iqn + "/1", wantPart: "scheme"},
		{name: "no host", in: "iscsi:///" + iqn + "/1", wantPart: "host"},
		{name: "bad port", in: "iscsi://h:99999/" + iqn + "/1", wantPart: "host"},
		{name: "no lun", in: "iscsi://h/" + iqn, wantPart: "path"},
		{name: "extra path", in: "iscsi://h/" + iqn + "/1/2", wantPart: "path"},
		{name: "bad lun", in: "iscsi://h/" + iqn + "/x", wantPart: "lun"},
		{name: "lun too big", in: "iscsi://h/" + iqn + "/16384", wantPart: "lun"},
		{name: "bad iqn", in: "iscsi://h/disk1/1", wantPart: "iqn"},
		{name: "query", in: "iscsi://h/" + iqn + "/1?x=1", wantPart: "syntax"},
		{name: "empty user", in: "iscsi://:pw@h/" + iqn + "/1", wantPart: "user"},
		{name: "garbage", in: "iscsi://h:pw:x@[/" + iqn + "/1", wantPart: "syntax"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURL(tc.in)
			if tc.want != (Target{}) {
				if err != nil || got != tc.want {
					t.Fatalf("ParseURL = %+v, %v; want %+v", got, err, tc.want)
				}
				if strings.Contains(got.String(), "s3cret") {
					t.Fatalf("String leaks the secret: %s", got)
				}
				back, err := ParseURL(strings.Replace(got.String(), "xxxxx", url.UserPassword("", got.Secret).String()[1:], 1))
				if err != nil || back != got {
					t.Fatalf("String round trip = %+v, %v", back, err)
				}
				return
			}
			if !errors.Is(err, ErrBadURL) {
				t.Fatalf("ParseURL error = %v, want ErrBadURL", err)
			}
			if !strings.Contains(err.Error(), ": "+tc.wantPart+": ") {
				t.Errorf("error %q does not name part %q", err, tc.wantPart)
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	ok := Config{InitiatorName: "iqn.2026-11.dev.understudy:n1", ISID: ISIDFromNodeID(1)}
	tests := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{name: "ok"},
		{name: "no name", mutate: func(c *Config) { c.InitiatorName = "" }, field: "InitiatorName"},
		{name: "bad name", mutate: func(c *Config) { c.InitiatorName = "node1" }, field: "InitiatorName"},
		{name: "zero isid", mutate: func(c *Config) { c.ISID = [6]byte{} }, field: "ISID"},
		{name: "secret without user", mutate: func(c *Config) { c.CHAPSecret = "x" }, field: "CHAPUser"},
		{name: "mrdsl too small", mutate: func(c *Config) { c.MaxRecvDataSegmentLength = 100 }, field: "MaxRecvDataSegmentLength"},
		{name: "burst too big", mutate: func(c *Config) { c.MaxBurstLength = 1 << 24 }, field: "MaxBurstLength"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			if tc.mutate != nil {
				tc.mutate(&c)
			}
			got, err := c.withDefaults()
			if tc.field == "" {
				if err != nil || got.MaxRecvDataSegmentLength != DefaultMaxRecvDataSegmentLength || got.Logger == nil {
					t.Fatalf("withDefaults = %+v, %v", got, err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("withDefaults error = %v, want ErrConfig naming %s", err, tc.field)
			}
		})
	}
}
