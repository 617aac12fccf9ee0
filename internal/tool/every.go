package tool

import (
	"context"
	"errors"
	"time"
)

// Every calls report at each interval until ctx is done (never when
// interval is 0), then once more for the end, and returns the reports'
// errors. It is the one interval runner of the counts and summaries of
// every tool (eperm -i, tcpreset -s, tcpconnect -c), so an exporter can
// drive the same reports.
func Every(ctx context.Context, interval time.Duration, report func(now time.Time) error) error {
	var errs []error
	if interval > 0 {
		tick := time.NewTicker(interval)
		defer tick.Stop()
	loop:
		for {
			select {
			case now := <-tick.C:
				if err := report(now); err != nil {
					errs = append(errs, err)
				}
			case <-ctx.Done():
				break loop
			}
		}
	} else {
		<-ctx.Done()
	}
	errs = append(errs, report(time.Now()))
	return errors.Join(errs...)
}
