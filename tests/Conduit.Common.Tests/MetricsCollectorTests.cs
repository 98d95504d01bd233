using System.Diagnostics.Metrics;
using Conduit.Common.Metrics;

namespace Conduit.Common.Tests;

/// <summary>The Prometheus text the collector writes: names, escaping, histograms, gauges read at scrape time.</summary>
public sealed class MetricsCollectorTests : IDisposable
{
    readonly Meter _meter = new("Conduit.Test." + Guid.NewGuid().ToString("N"));
    readonly MetricsCollector _collector;

    public MetricsCollectorTests() => _collector = new MetricsCollector(m => m == _meter, new KeyValuePair<string, string>("role", "all"));

    public void Dispose()
    {
        _collector.Dispose();
        _meter.Dispose();
    }

    static string[] Lines(string scrape) => scrape.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    [Fact]
    public void A_counter_is_summed_per_tag_set_with_total_suffix_help_and_type()
    {
        var c = _meter.CreateCounter<long>("conduit.things", null, "Things done.\nSecond line with \\.");
        c.Add(2, new KeyValuePair<string, object?>("kind", "a"));
        c.Add(3, new KeyValuePair<string, object?>("kind", "a"));
        c.Add(1, new KeyValuePair<string, object?>("kind", "b"));
        Assert.Equal(
        [
            "# HELP conduit_things_total Things done.\\nSecond line with \\\\.",
            "# TYPE conduit_things_total counter",
            "conduit_things_total{role=\"all\",kind=\"a\"} 5",
            "conduit_things_total{role=\"all\",kind=\"b\"} 1",
        ], Lines(_collector.Scrape()));
    }

    [Fact]
    public void Label_values_escape_backslash_quote_and_line_feed_and_label_names_are_sanitized()
    {
        var c = _meter.CreateCounter<int>("conduit.escaped");
        c.Add(1, new KeyValuePair<string, object?>("http.route", "a\"b\\c\nd"), new KeyValuePair<string, object?>("code", 404));
        Assert.Contains("conduit_escaped_total{role=\"all\",http_route=\"a\\\"b\\\\c\\nd\",code=\"404\"} 1", Lines(_collector.Scrape()));
        Assert.Equal("plain", MetricsCollector.EscapeLabelValue("plain"));
    }

    [Fact]
    public void A_histogram_writes_cumulative_buckets_with_inf_then_sum_and_count()
    {
        var h = _meter.CreateHistogram<double>("conduit.wait", "s", null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.5, 1, 2] });
        var tag = new KeyValuePair<string, object?>("route", "/x");
        foreach (var v in new[] { 0.25, 1.0, 1.5, 3.0 }) h.Record(v, tag);
        Assert.Equal(
        [
            "# TYPE conduit_wait_seconds histogram",
            "conduit_wait_seconds_bucket{role=\"all\",route=\"/x\",le=\"0.5\"} 1",
            // le is inclusive: 1.0 counts in le="1".
            "conduit_wait_seconds_bucket{role=\"all\",route=\"/x\",le=\"1\"} 2",
            "conduit_wait_seconds_bucket{role=\"all\",route=\"/x\",le=\"2\"} 3",
            "conduit_wait_seconds_bucket{role=\"all\",route=\"/x\",le=\"+Inf\"} 4",
            "conduit_wait_seconds_sum{role=\"all\",route=\"/x\"} 5.75",
            "conduit_wait_seconds_count{role=\"all\",route=\"/x\"} 4",
        ], Lines(_collector.Scrape()));
    }

    [Fact]
    public void A_histogram_without_advice_uses_the_default_buckets()
    {
        _meter.CreateHistogram<long>("conduit.size", "By").Record(7);
        var lines = Lines(_collector.Scrape());
        Assert.Equal(MetricsCollector.DefaultBuckets.Length + 1, lines.Count(l => l.StartsWith("conduit_size_bytes_bucket{", StringComparison.Ordinal)));
        Assert.Contains("conduit_size_bytes_bucket{role=\"all\",le=\"60\"} 1", lines);
        Assert.Contains("conduit_size_bytes_count{role=\"all\"} 1", lines);
    }

    [Fact]
    public void Observable_gauges_are_read_at_each_scrape_and_series_that_went_away_are_dropped()
    {
        var values = new List<Measurement<long>> { new(3, new KeyValuePair<string, object?>("state", "a")), new(4, new KeyValuePair<string, object?>("state", "b")) };
        _meter.CreateObservableGauge("conduit.depth", () => values.ToArray());
        var first = Lines(_collector.Scrape());
        Assert.Contains("conduit_depth{role=\"all\",state=\"a\"} 3", first);
        Assert.Contains("# TYPE conduit_depth gauge", first);
        values = [new(5, new KeyValuePair<string, object?>("state", "a"))];
        var second = Lines(_collector.Scrape());
        Assert.Contains("conduit_depth{role=\"all\",state=\"a\"} 5", second);
        Assert.DoesNotContain(second, l => l.Contains("state=\"b\"", StringComparison.Ordinal));
    }

    [Fact]
    public void An_up_down_counter_is_a_gauge_and_unlistened_meters_are_ignored()
    {
        var u = _meter.CreateUpDownCounter<int>("conduit.open");
        u.Add(2);
        u.Add(-1);
        using var other = new Meter("Conduit.Other");
        other.CreateCounter<long>("conduit.elsewhere").Add(1);
        var lines = Lines(_collector.Scrape());
        Assert.Contains("# TYPE conduit_open gauge", lines);
        Assert.Contains("conduit_open{role=\"all\"} 1", lines);
        Assert.DoesNotContain(lines, l => l.Contains("elsewhere", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("conduit.http.request.duration", "s", false, "conduit_http_request_duration_seconds")]
    [InlineData("process.resident_memory", "By", false, "process_resident_memory_bytes")]
    [InlineData("conduit.grpc.client.calls", null, true, "conduit_grpc_client_calls_total")]
    [InlineData("dotnet.gc.allocated", "By", true, "dotnet_gc_allocated_bytes_total")]
    [InlineData("9-lives", null, false, "__lives")]
    public void Instrument_names_become_prometheus_names(string name, string? unit, bool counter, string expected)
        => Assert.Equal(expected, MetricsCollector.MetricName(name, unit, counter));

    [Fact]
    public void Values_are_written_in_the_invariant_culture_with_prometheus_infinities()
    {
        Assert.Equal("0.25", MetricsCollector.FormatValue(0.25));
        Assert.Equal("+Inf", MetricsCollector.FormatValue(double.PositiveInfinity));
        Assert.Equal("-Inf", MetricsCollector.FormatValue(double.NegativeInfinity));
        Assert.Equal("NaN", MetricsCollector.FormatValue(double.NaN));
    }
}
