package gateway

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wagateway/wagateway/rtpbridge"
)

// workerCollector reports the media workers (rtpbridge, worker.go): one
// series per worker, read from its atomic counters at each scrape.
type workerCollector struct {
	calls, wakeups, late, busy, maxLag, maxTick *prometheus.Desc
}

func newWorkerCollector() *workerCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "media_worker", name), help, []string{"worker"}, nil)
	}
	return &workerCollector{
		calls:   d("calls", "Calls whose media this worker runs now."),
		wakeups: d("wakeups_total", "Times the worker woke to run its calls' media (about 1,000 a second while it has calls)."),
		late:    d("late_wakeups_total", "Wake-ups that began more than 5 ms after their time: frames toward WhatsApp were at least that late (a CPU starved or stalled)."),
		busy:    d("busy_seconds_total", "Wall time the worker spent on its calls' media (its rate: the share of a core it takes, with any time it lost the CPU meanwhile)."),
		maxLag:  d("max_lag_seconds", "The latest any wake-up began after its time since the process started."),
		maxTick: d("max_wakeup_seconds", "The longest single wake-up's work since the process started."),
	}
}

func (c *workerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.calls, c.wakeups, c.late, c.busy, c.maxLag, c.maxTick} {
		ch <- d
	}
}

func (c *workerCollector) Collect(ch chan<- prometheus.Metric) {
	for i, w := range rtpbridge.Workers() {
		id := strconv.Itoa(i)
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.GaugeValue, float64(w.Calls), id)
		ch <- prometheus.MustNewConstMetric(c.wakeups, prometheus.CounterValue, float64(w.Ticks), id)
		ch <- prometheus.MustNewConstMetric(c.late, prometheus.CounterValue, float64(w.LateTicks), id)
		ch <- prometheus.MustNewConstMetric(c.busy, prometheus.CounterValue, w.Busy.Seconds(), id)
		ch <- prometheus.MustNewConstMetric(c.maxLag, prometheus.GaugeValue, w.MaxLag.Seconds(), id)
		ch <- prometheus.MustNewConstMetric(c.maxTick, prometheus.GaugeValue, w.MaxTick.Seconds(), id)
	}
}
