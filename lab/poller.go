package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Defaults of PollerOptions: a user's client asking every 10 ms, giving up on an answer
// after 100 ms (a request lost to a moving address must not hide the next ones).
const (
	DefaultPollInterval = 10 * time.Millisecond
	DefaultPollTimeout  = 100 * time.Millisecond
)

// dialFunc makes a connection, e.g. from inside a lab namespace (Netns.DialContext).
type dialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// PollerOptions configure a Poller.
type PollerOptions struct {
	URL      string        // e.g. "http://192.0.2.50:8080/"
	Interval time.Duration // between request starts; default 10 ms
	Timeout  time.Duration // per request, dial included; default 100 ms
	// Dial makes the connections, e.g. Netns.DialContext of the client namespace; nil
	// dials from this process's namespace.
	Dial dialFunc
}

// Sample is one request of a Poller.
type Sample struct {
	Start, End time.Time
	OK         bool
	Reply      Reply
	Err        string
}

// Poller is a client asking one URL at a fixed rate, as a user of a role would; each
// request is a new connection, so a moved address is seen at once. A request starts
// every Interval whether or not the previous ones were answered (at most
// Timeout/Interval+1 in flight), so an outage is measured to the Interval, not to the
// Timeout of the requests that were lost in it.
type Poller struct {
	cancel  context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex // guards samples
	samples []Sample
}

// StartPoller starts polling until Stop or ctx ends.
func StartPoller(ctx context.Context, o PollerOptions) (*Poller, error) {
	if o.URL == "" {
		return nil, fmt.Errorf("%w: poller URL: required", ErrInvalidOption)
	}
	if o.Interval <= 0 {
		o.Interval = DefaultPollInterval
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultPollTimeout
	}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: o.Dial}
	hc := &http.Client{Timeout: o.Timeout, Transport: tr}
	ctx, cancel := context.WithCancel(ctx)
	p := &Poller{cancel: cancel, done: make(chan struct{})}
	slots := make(chan struct{}, int(o.Timeout/o.Interval)+1)
	go func() {
		defer close(p.done)
		var wg sync.WaitGroup
		defer tr.CloseIdleConnections()
		defer wg.Wait()
		tick := time.NewTicker(o.Interval)
		defer tick.Stop()
		for {
			select {
			case slots <- struct{}{}:
				wg.Go(func() {
					defer func() { <-slots }()
					s := pollOnce(ctx, hc, o.URL, o.Timeout)
					if ctx.Err() != nil {
						return // a request cut short by Stop is not an answer
					}
					p.mu.Lock()
					p.samples = append(p.samples, s)
					p.mu.Unlock()
				})
			default: // every slot waits on a lost request: this tick's request is skipped
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p, nil
}

func pollOnce(ctx context.Context, hc *http.Client, url string, timeout time.Duration) Sample {
	s := Sample{Start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep, err := getReply(ctx, hc, url)
	s.End = time.Now()
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.OK, s.Reply = true, rep
	return s
}

func getReply(ctx context.Context, hc *http.Client, url string) (Reply, error) {
	var rep Reply
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return rep, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return rep, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return rep, json.NewDecoder(resp.Body).Decode(&rep)
}

// Samples returns a copy of the samples so far, in order of their start.
func (p *Poller) Samples() []Sample {
	p.mu.Lock()
	s := append([]Sample(nil), p.samples...)
	p.mu.Unlock()
	slices.SortFunc(s, func(a, b Sample) int { return a.Start.Compare(b.Start) })
	return s
}

// Stop stops polling, waits for the poller's goroutine and returns every sample in order.
func (p *Poller) Stop() []Sample {
	p.cancel()
	<-p.done
	return p.Samples()
}

// LongestGap is the longest time within [from, to] without a successful answer: between
// the ends of two consecutive successes, or from `from` to the first and from the last
// to `to`. start and end bound that gap.
func LongestGap(samples []Sample, from, to time.Time) (gap time.Duration, start, end time.Time) {
	// Answers may arrive out of order (requests overlap): walk them by arrival.
	samples = slices.Clone(samples)
	slices.SortFunc(samples, func(a, b Sample) int { return a.End.Compare(b.End) })
	prev := from
	consider := func(t time.Time) {
		if d := t.Sub(prev); d > gap {
			gap, start, end = d, prev, t
		}
	}
	for _, s := range samples {
		if !s.OK || s.End.Before(from) || s.End.After(to) {
			continue
		}
		consider(s.End)
		prev = s.End
	}
	consider(to)
	return gap, start, end
}

// FirstFrom returns the first successful sample served by node that started at or after
// t.
func FirstFrom(samples []Sample, node string, t time.Time) (Sample, bool) {
	for _, s := range samples {
		if s.OK && s.Reply.Node == node && !s.Start.Before(t) {
			return s, true
		}
	}
	return Sample{}, false
}
