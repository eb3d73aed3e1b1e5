package main

import (
	"bufio"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/fence"
)

// agentOption is one option of the agent, by its stdin name.
type agentOption struct {
	name    string
	alias   string // older name accepted too (port for plug, option for action)
	short   byte   // getopt letter on the command line, 0 = none
	boolean bool
	def     string
	hidden  bool // passed by Pacemaker itself: accepted, not in the metadata
	help    string
}

// agentOptions is the one list of options: the parsers, validate-all and the metadata all
// come from it. Unknown options are errors (see docs/fence-agent.md for why).
var agentOptions = []agentOption{
	{name: "action", alias: "option", short: 'o', def: "off", help: "Fencing action: on (unfence: register the key), off (fence: preempt the key, verify), status, monitor, metadata, validate-all"},
	{name: "plug", alias: "port", short: 'n', help: "Node id of the node to act on (decimal, >= 1): its key is the cluster hash + node id. Map node names to ids with pcmk_host_map. Ignored when key is given"},
	{name: "devices", short: 'd', help: "Comma separated LUNs: /dev/... (a dm-multipath device stands for all its paths) or iscsi://host[:port]/<iqn>/<lun>"},
	{name: "cluster", short: 'c', help: "understudy cluster name: the high 4 bytes of every key. Required to derive keys from node ids"},
	{name: "key", short: 'k', help: "Key of the node to act on, hex (0x6754af9600000002); overrides plug"},
	{name: "local_node_id", help: "This node's id, whose key off preempts with (default: the key in key_file)"},
	{name: "local_key", help: "This node's key, hex (default: the key in key_file)"},
	{name: "key_file", def: defaultKeyFile, help: "on records the key it registered here; off reads this node's own key from it. Empty: not used"},
	{name: "initiator_name", def: defaultCLIInitiator, help: "iSCSI initiator name for iscsi:// devices"},
	{name: "timeout", def: "30", help: "Seconds the action may take (after delay)"},
	{name: "delay", def: "0", help: "Seconds to wait before off, so that one side of a fence race wins"},
	{name: "verbose", short: 'v', boolean: true, help: "Log reservation changes and retries to stderr"},
	{name: "nodename", hidden: true, help: "Name of the node to act on, as Pacemaker passes it: used as plug when there is no plug"},
	{name: "nodeid", hidden: true, help: "Corosync node id of the node to act on, as Pacemaker passes it: not used (keys come from plug)"},
}

// lookupAgentOption finds an option by stdin or long name ('-' and '_' are the same).
func lookupAgentOption(name string) (agentOption, bool) {
	name = strings.ReplaceAll(name, "-", "_")
	for _, o := range agentOptions {
		if name == o.name || (o.alias != "" && name == o.alias) {
			return o, true
		}
	}
	return agentOption{}, false
}

func unknownOption(name, where string) error {
	var known []string
	for _, o := range agentOptions {
		known = append(known, o.name)
	}
	return fmt.Errorf("fence-agent: unknown option %q %s (known: %s)", name, where, strings.Join(known, ", "))
}

// maxAgentInput bounds stdin: options are a few hundred bytes, and a runaway writer must
// not make the agent buffer without end.
const maxAgentInput = 1 << 20

// parseAgentStdin reads the stdin convention: one name=value per line, blank lines and
// lines starting with # ignored, whitespace around the line and double quotes around the
// value stripped, the last of repeated names winning. Names are canonical in the result.
func parseAgentStdin(r io.Reader) (map[string]string, error) {
	opts := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, maxAgentInput))
	sc.Buffer(make([]byte, 0, 4096), maxAgentInput)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("fence-agent: stdin line %d %q: want name=value", n, line)
		}
		o, ok := lookupAgentOption(name)
		if !ok {
			return nil, unknownOption(name, fmt.Sprintf("on stdin line %d", n))
		}
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1]
		}
		opts[o.name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fence-agent: read stdin: %w", err)
	}
	return opts, nil
}

// parseAgentArgs reads command-line options, getopt style: --name=value, --name value,
// -x value, -xvalue; boolean options take no value (--verbose, -v).
func parseAgentArgs(args []string) (map[string]string, error) {
	opts := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var o agentOption
		var value string
		var hasValue, ok bool
		switch {
		case strings.HasPrefix(a, "--") && len(a) > 2:
			var name string
			name, value, hasValue = strings.Cut(a[2:], "=")
			if o, ok = lookupAgentOption(name); !ok {
				return nil, unknownOption("--"+name, "on the command line")
			}
		case len(a) >= 2 && a[0] == '-' && a[1] != '-':
			if o, ok = agentShort(a[1]); !ok {
				return nil, unknownOption(a[:2], "on the command line")
			}
			value, hasValue = a[2:], len(a) > 2
		default:
			return nil, fmt.Errorf("fence-agent: unexpected argument %q: options are --name=value (or name=value lines on stdin)", a)
		}
		switch {
		case o.boolean && !hasValue:
			value = "1"
		case !hasValue:
			if i+1 >= len(args) {
				return nil, fmt.Errorf("fence-agent: option %s needs a value", a)
			}
			i++
			value = args[i]
		}
		opts[o.name] = value
	}
	return opts, nil
}

func agentShort(c byte) (agentOption, bool) {
	for _, o := range agentOptions {
		if o.short != 0 && o.short == c {
			return o, true
		}
	}
	return agentOption{}, false
}

// agentConfig is the validated input of one invocation.
type agentConfig struct {
	action         string
	opts           map[string]string // canonical name -> value, defaults filled
	devices        []string
	timeout, delay time.Duration
	verbose        bool
}

// newAgentConfig fills defaults and checks what every action needs: a known action and
// well-formed values. What only some actions need (devices, keys) is checked by them.
func newAgentConfig(opts map[string]string) (*agentConfig, error) {
	for _, o := range agentOptions {
		if _, set := opts[o.name]; !set && o.def != "" {
			opts[o.name] = o.def
		}
	}
	c := &agentConfig{action: strings.ToLower(opts["action"]), opts: opts}
	if c.action == "meta-data" { // the OCF spelling
		c.action = "metadata"
	}
	if !slices.Contains(agentActions, c.action) {
		return nil, fmt.Errorf("fence-agent: action %q: allowed %s (reboot is not offered: fabric fencing cannot power a node on; Pacemaker does off instead)",
			opts["action"], strings.Join(agentActions, ", "))
	}
	var err error
	if c.timeout, err = agentSeconds(opts, "timeout"); err == nil && c.timeout <= 0 {
		err = fmt.Errorf("fence-agent: option timeout %q: must be > 0", opts["timeout"])
	}
	if err != nil {
		return nil, err
	}
	if c.delay, err = agentSeconds(opts, "delay"); err != nil {
		return nil, err
	}
	if c.verbose, err = agentBool(opts, "verbose"); err != nil {
		return nil, err
	}
	c.devices = strings.FieldsFunc(opts["devices"], func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
	return c, nil
}

// agentActions are the actions offered, in metadata order.
var agentActions = []string{"on", "off", "status", "monitor", "metadata", "validate-all"}

// agentSeconds parses a duration option: seconds as fence-agents give them ("20",
// "1.5"), or a Go duration ("500ms").
func agentSeconds(opts map[string]string, name string) (time.Duration, error) {
	v := opts[name]
	if s, err := strconv.ParseFloat(v, 64); err == nil && s >= 0 && s <= 86400 {
		return time.Duration(s * float64(time.Second)), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 && d <= 24*time.Hour {
		return d, nil
	}
	return 0, fmt.Errorf("fence-agent: option %s %q: want seconds (0-86400) or a duration like 500ms", name, v)
}

// agentBool parses a boolean option the way fence-agents do.
func agentBool(opts map[string]string, name string) (bool, error) {
	switch strings.ToLower(opts[name]) {
	case "", "0", "no", "off", "false":
		return false, nil
	case "1", "yes", "on", "true":
		return true, nil
	}
	return false, fmt.Errorf("fence-agent: option %s %q: want 1/yes/on/true or 0/no/off/false", name, opts[name])
}

// targetKey is the key of the node acted on: key, else the node id in plug (or, without
// plug, nodename) with cluster -- fence.NewKey, exactly as `understudy fence --node-id`
// and the agent build keys.
func (c *agentConfig) targetKey() (fence.Key, error) {
	if k := c.opts["key"]; k != "" {
		key, err := fence.ParseKey(k)
		if err != nil {
			return 0, fmt.Errorf("fence-agent: option key: %w", err)
		}
		return key, nil
	}
	plug, field := c.opts["plug"], "plug"
	if plug == "" {
		plug, field = c.opts["nodename"], "nodename"
	}
	if plug == "" {
		return 0, errors.New("fence-agent: option plug: missing: give plug (the node id) or key")
	}
	return c.idKey(field, plug)
}

// idKey builds the key of the node id in value (option field) of cluster.
func (c *agentConfig) idKey(field, value string) (fence.Key, error) {
	id, err := strconv.ParseUint(value, 10, 32)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("fence-agent: option %s %q: want a node id (decimal, 1-4294967295); map node names to ids with pcmk_host_map", field, value)
	}
	if c.opts["cluster"] == "" {
		return 0, fmt.Errorf("fence-agent: option cluster: missing: needed to build the key of %s %s (or give the key itself)", field, value)
	}
	return fence.NewKey(c.opts["cluster"], uint32(id))
}

// Metadata, in the shape fence-agents print (lib/metadata.rng): pcs reads the parameters
// from it, Pacemaker the actions. "on" is on_target and automatic, as for fence_scsi:
// Pacemaker unfences a node by running "on" on that node when it joins. No "reboot":
// Pacemaker then fences with "off".
type agentMeta struct {
	XMLName   xml.Name      `xml:"resource-agent"`
	Name      string        `xml:"name,attr"`
	ShortDesc string        `xml:"shortdesc,attr"`
	LongDesc  string        `xml:"longdesc"`
	VendorURL string        `xml:"vendor-url"`
	Params    []agentParam  `xml:"parameters>parameter"`
	Actions   []agentAction `xml:"actions>action"`
}

type agentParam struct {
	Name       string `xml:"name,attr"`
	Unique     string `xml:"unique,attr"`
	Required   string `xml:"required,attr"`
	Obsoletes  string `xml:"obsoletes,attr,omitempty"`
	Deprecated string `xml:"deprecated,attr,omitempty"`
	Getopt     struct {
		Mixed string `xml:"mixed,attr"`
	} `xml:"getopt"`
	Content struct {
		Type    string `xml:"type,attr"`
		Default string `xml:"default,attr,omitempty"`
	} `xml:"content"`
	ShortDesc struct {
		Lang string `xml:"lang,attr"`
		Text string `xml:",chardata"`
	} `xml:"shortdesc"`
}

type agentAction struct {
	Name      string `xml:"name,attr"`
	OnTarget  string `xml:"on_target,attr,omitempty"`
	Automatic string `xml:"automatic,attr,omitempty"`
}

const agentLongDesc = `fence_understudy fences with SCSI-3 persistent reservations, with the keys of understudy (first 4 bytes of SHA-256 of the cluster name + node id). Every node registers its key on every path of every device (on, run by Pacemaker on the node itself when it joins); a Write Exclusive - Registrants Only reservation lets only registered nodes write. off preempts the victim's key (PREEMPT AND ABORT, or PREEMPT where the target lacks it) with this node's key and verifies with READ KEYS on every path that it is gone. The target then rejects every write of the fenced node. A fenced node must be rebooted and unfenced to write again.`

func writeAgentMetadata(w io.Writer) error {
	m := agentMeta{Name: "fence_understudy", ShortDesc: "Fence agent for SCSI-3 persistent reservations with understudy's keys",
		LongDesc: agentLongDesc}
	for _, o := range agentOptions {
		if o.hidden {
			continue
		}
		m.Params = append(m.Params, agentParamOf(o, o.name))
		if o.alias == "port" { // fence_scsi lists the old name too, deprecated
			p := agentParamOf(o, o.alias)
			p.Deprecated = "1"
			m.Params = append(m.Params, p)
		}
	}
	for _, a := range agentActions {
		act := agentAction{Name: a}
		if a == "on" {
			act.OnTarget, act.Automatic = "1", "1"
		}
		m.Actions = append(m.Actions, act)
	}
	b, err := xml.MarshalIndent(m, "", "\t")
	if err != nil {
		return fmt.Errorf("fence-agent: metadata: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s%s\n", `<?xml version="1.0" ?>`+"\n", b)
	return err
}

func agentParamOf(o agentOption, name string) agentParam {
	p := agentParam{Name: name, Unique: "0", Required: "0"}
	if o.name == "action" {
		p.Required = "1"
	}
	if o.alias == "port" && name == o.name {
		p.Obsoletes = o.alias
	}
	p.Getopt.Mixed = "--" + strings.ReplaceAll(o.name, "_", "-")
	if !o.boolean {
		p.Getopt.Mixed += "=[" + o.name + "]"
	}
	if o.short != 0 {
		p.Getopt.Mixed = "-" + string(o.short) + ", " + p.Getopt.Mixed
	}
	switch {
	case o.boolean:
		p.Content.Type = "boolean"
	case o.name == "timeout" || o.name == "delay":
		p.Content.Type = "second"
	default:
		p.Content.Type = "string"
	}
	p.Content.Default = o.def
	p.ShortDesc.Lang, p.ShortDesc.Text = "en", o.help
	return p
}
