package iscsi_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/understudy-ha/understudy/fence/iscsi"
	"github.com/understudy-ha/understudy/fence/scsi"
)

func ExampleParseURL() {
	t, err := iscsi.ParseURL("iscsi://node1:s3cret-s3cret@127.0.0.1/iqn.2026-11.dev.understudy:disk1/1")
	if err != nil {
		panic(err)
	}
	fmt.Println(t.Addr, t.IQN, t.LUN, t.User)
	fmt.Println(t) // the secret is redacted
	_, err = iscsi.ParseURL("iscsi://127.0.0.1/iqn.2026-11.dev.understudy:disk1/x")
	fmt.Println(errors.Is(err, iscsi.ErrBadURL), err)
	// Output:
	// 127.0.0.1:3260 iqn.2026-11.dev.understudy:disk1 1 node1
	// iscsi://node1:xxxxx@127.0.0.1:3260/iqn.2026-11.dev.understudy:disk1/1
	// true fence/iscsi: bad iscsi URL "iscsi://127.0.0.1/iqn.2026-11.dev.understudy:disk1/x": lun: "x", want a decimal number in [0, 16383]
}

func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	target, err := iscsi.ParseURL("iscsi://127.0.0.1:3260/iqn.2026-11.dev.understudy:disk1/1")
	if err != nil {
		panic(err)
	}
	s, err := iscsi.Dial(ctx, target, iscsi.Config{
		InitiatorName: "iqn.2026-11.dev.understudy:node-7",
		ISID:          iscsi.ISIDFromNodeID(7), // stable per node
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close(ctx)

	// READ KEYS through the session, as fence does through fence.Transport.
	resp, err := s.Execute(ctx, scsi.PersistentReserveIn(scsi.PRInReadKeys, 1024))
	if err != nil { // transport failure: the command may or may not have run
		fmt.Println(err)
		return
	}
	if err := resp.Err(); err != nil { // SCSI status, e.g. UNIT ATTENTION after login
		fmt.Println(err)
		return
	}
	keys, _ := scsi.ParseReadKeys(resp.DataIn)
	fmt.Printf("%#x\n", keys.Keys)
}
