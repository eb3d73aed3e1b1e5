package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/lease"
)

func (a *app) newHistoryCmd() *cobra.Command {
	var output, svgFile string
	var limit int
	cmd := &cobra.Command{
		Use:   "history [ROLE]",
		Short: "Show the failover timeline with per-step durations",
		Long: `history shows the newest events of the cluster (or of one role), oldest first:
takeovers with the duration of each step (fence, storage, exec, vip, health) and the total,
releases, demotions, failed takeovers, joins and qualifications. -o svg draws the
events that have steps as an SVG picture on stdout: a bar per event, split into its steps;
--svg FILE writes that picture to FILE and the table to stdout.`,
		Example: `  understudy history
  understudy history web --limit 10
  understudy history -o json | jq '.[] | select(.kind == "takeover") | .total_ns'
  understudy history web -o svg > web-timeline.svg
  understudy history --svg timeline.svg`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := outputFlag(output, formatTable, formatJSON, formatSVG); err != nil {
				return err
			}
			if limit < 1 {
				return usageErrorf("invalid --limit %d: want 1 or more", limit)
			}
			role := ""
			if len(args) == 1 {
				role = args[0]
				if err := lease.CheckRoleName(role); err != nil {
					return &exitError{code: exitUsage, err: err}
				}
			}
			st, done, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			evs, err := st.Events(cmd.Context(), role, limit)
			if err != nil {
				return fmt.Errorf("read history: %w", err)
			}
			if output == formatJSON {
				if evs == nil {
					evs = []lease.Event{}
				}
				return writeJSON(a.stdout, evs)
			}
			if output == formatSVG {
				return writeHistorySVG(a.stdout, evs)
			}
			if svgFile != "" {
				if err := writeHistorySVGFile(svgFile, evs); err != nil {
					return err
				}
			}
			return renderHistory(a.stdout, evs)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", formatTable, "output format: table, json or svg")
	cmd.Flags().IntVar(&limit, "limit", 50, "show at most this many of the newest events")
	cmd.Flags().StringVar(&svgFile, "svg", "", "also write the timeline as an SVG picture to this file")
	return cmd
}

// writeHistorySVGFile writes the picture to path through a temporary file, so a failed
// write never leaves half a picture behind.
func writeHistorySVGFile(path string, evs []lease.Event) error {
	var b bytes.Buffer
	if err := writeHistorySVG(&b, evs); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("history --svg: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("history --svg: %w", err)
	}
	return nil
}

func renderHistory(w io.Writer, evs []lease.Event) error {
	if len(evs) == 0 {
		_, err := fmt.Fprintln(w, "no events")
		return err
	}
	tw := newTable(w)
	row(tw, "TIME", "ROLE", "KIND", "NODE", "FROM", "TOKEN", "STEPS", "TOTAL", "DETAIL")
	for _, ev := range evs {
		total := "-"
		if ev.Total > 0 {
			total = shortDuration(ev.Total)
		}
		row(tw, ev.Time.Local().Format("2006-01-02 15:04:05.000"), dash(ev.Role), ev.Kind,
			dash(ev.Node), dash(ev.From), tokenCell(ev.Token), lease.FormatSteps(ev.Steps), total,
			detailCell(ev))
	}
	return tw.Flush()
}

// detailCell joins the event's detail and the errors of failed steps, on one line so the
// table stays a table.
func detailCell(ev lease.Event) string {
	var parts []string
	if ev.Detail != "" {
		parts = append(parts, ev.Detail)
	}
	for _, s := range ev.Steps {
		if s.Err != "" {
			parts = append(parts, s.Name+": "+s.Err)
		}
	}
	return dash(oneLine(strings.Join(parts, "; ")))
}
