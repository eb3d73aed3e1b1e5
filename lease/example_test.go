package lease_test

import (
	"fmt"

	"github.com/understudy-ha/understudy/lease"
)

func ExampleParseSpec() {
	spec, err := lease.ParseSpec([]byte(`
roles:
  - name: web
    exec:
      command: [/usr/bin/python3, -m, http.server, "8080"]
    vip:
      address: 10.0.0.10/24
      interface: eth0
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	web, _ := spec.Role("web")
	fmt.Println(web.Exec.StopTimeout, web.Exec.Restarts, spec.MaxRolesPerNode)

	_, err = lease.ParseSpec([]byte(`
roles:
  - name: web
    vip: {address: 10.0.0.300/24, interface: eth0}
`))
	fmt.Println(err)
	// Output:
	// 10s 3 1
	// roles[0].vip.address: "10.0.0.300/24" is not an IP prefix
}
