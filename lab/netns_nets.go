package lab

// The lab's networks, for SetLinkOn and Partition (the plan is in netns_linux.go).
const (
	NetClient  = "client"
	NetControl = "control"
	NetSAN     = "san"
)
