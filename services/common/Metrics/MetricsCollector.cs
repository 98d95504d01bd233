using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Conduit.Common.Metrics;

/// <summary>
/// Aggregates the measurements of System.Diagnostics.Metrics instruments and writes them in the Prometheus text
/// exposition format (version 0.0.4). A <see cref="MeterListener"/> subscribes to the instruments of the meters
/// <c>include</c> accepts; nothing else is listened to, and without a collector no instrument is, so recording
/// costs only the instrument's enabled check. Counters and up-down counters are summed per tag set, histograms
/// counted into fixed buckets (the instrument's advice, else <see cref="DefaultBuckets"/>), observable instruments
/// read at each scrape. Recording allocates only when a tag set is seen for the first time: a series is found by
/// the measurement's tag span itself (an alternate lookup), so callers must pass tags in a fixed order and with
/// bounded values (a route template, never a raw path).
/// </summary>
public sealed class MetricsCollector : IDisposable
{
    /// <summary>Seconds: from a cached answer to a /sync long-poll that ran its whole timeout.</summary>
    public static readonly double[] DefaultBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    readonly MeterListener _listener = new();
    readonly ConcurrentDictionary<Instrument, Family> _families = new();
    readonly string _constantLabels;
    readonly Lock _scrape = new();

    /// <param name="include">Which meters to listen to.</param>
    /// <param name="constantLabels">Labels put on every series (the role of the process), in this order.</param>
    public MetricsCollector(Func<Meter, bool> include, params KeyValuePair<string, string>[] constantLabels)
    {
        var labels = new StringBuilder();
        foreach (var (k, v) in constantLabels) AppendLabel(labels, k, v);
        _constantLabels = labels.ToString();
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (!include(instrument.Meter) || Family.Create(instrument) is not { } family) return;
            _families[instrument] = family;
            listener.EnableMeasurementEvents(instrument, family);
        };
        _listener.MeasurementsCompleted = (instrument, _) => _families.TryRemove(instrument, out Family? _);
        _listener.SetMeasurementEventCallback<long>((_, v, tags, state) => ((Family)state!).Record(v, tags));
        _listener.SetMeasurementEventCallback<int>((_, v, tags, state) => ((Family)state!).Record(v, tags));
        _listener.SetMeasurementEventCallback<double>((_, v, tags, state) => ((Family)state!).Record(v, tags));
        _listener.Start();
    }

    /// <summary>Every family in the text format, observable instruments read now. One scrape at a time.</summary>
    public string Scrape()
    {
        lock (_scrape)
        {
            foreach (var f in _families.Values) if (f.Observed) f.Clear();
            _listener.RecordObservableInstruments();
            var sb = new StringBuilder(4096);
            // Families of one name (the same instrument from two meters) share one header.
            foreach (var group in _families.Values.GroupBy(f => f.Name, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                var first = group.First();
                if (first.Help.Length > 0) sb.Append("# HELP ").Append(first.Name).Append(' ').Append(EscapeHelp(first.Help)).Append('\n');
                sb.Append("# TYPE ").Append(first.Name).Append(' ').Append(first.Type).Append('\n');
                foreach (var f in group) f.Write(sb, _constantLabels);
            }
            return sb.ToString();
        }
    }

    public void Dispose() => _listener.Dispose();

    // ---- names and escaping (https://prometheus.io/docs/instrumenting/exposition_formats/)

    /// <summary>The Prometheus name of an instrument: dots to underscores, the unit as a suffix (s: _seconds, By:
    /// _bytes), _total on counters.</summary>
    public static string MetricName(string instrument, string? unit, bool counter)
    {
        var n = SanitizeName(instrument);
        var suffix = unit switch { "s" => "_seconds", "ms" => "_milliseconds", "By" => "_bytes", _ => "" };
        if (suffix.Length > 0 && !n.EndsWith(suffix, StringComparison.Ordinal)) n += suffix;
        if (counter && !n.EndsWith("_total", StringComparison.Ordinal)) n += "_total";
        return n;
    }

    /// <summary>[a-zA-Z_:][a-zA-Z0-9_:]* for metric names; labels may not use ':'.</summary>
    static string SanitizeName(string s, bool label = false)
    {
        var chars = s.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            var c = chars[i];
            var ok = char.IsAsciiLetter(c) || c == '_' || (!label && c == ':') || (i > 0 && char.IsAsciiDigit(c));
            if (!ok) chars[i] = '_';
        }
        return chars.Length == 0 ? "_" : new string(chars);
    }

    /// <summary>A label value: backslash, double quote and line feed escaped.</summary>
    public static string EscapeLabelValue(string v)
    {
        if (v.AsSpan().IndexOfAny('\\', '"', '\n') < 0) return v;
        return v.Replace("\\", @"\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", @"\n", StringComparison.Ordinal);
    }

    static string EscapeHelp(string v) => v.Replace("\\", @"\\", StringComparison.Ordinal).Replace("\n", @"\n", StringComparison.Ordinal);

    static void AppendLabel(StringBuilder sb, string name, string value)
    {
        if (sb.Length > 0) sb.Append(',');
        sb.Append(SanitizeName(name, label: true)).Append("=\"").Append(EscapeLabelValue(value)).Append('"');
    }

    public static string FormatValue(double v) =>
        double.IsPositiveInfinity(v) ? "+Inf" : double.IsNegativeInfinity(v) ? "-Inf" : double.IsNaN(v) ? "NaN" : v.ToString("R", CultureInfo.InvariantCulture);

    static string TagText(object? value) => value switch
    {
        null => "",
        string s => s,
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    static void AddDouble(ref double target, double value)
    {
        var seen = Volatile.Read(ref target);
        while (true)
        {
            var was = Interlocked.CompareExchange(ref target, seen + value, seen);
            if (was.Equals(seen)) return;
            seen = was;
        }
    }

    // ---- series, found by a measurement's tag span without allocating

    /// <summary>A tag set as stored: the measurement's tags, copied once when the series is created.</summary>
    sealed class Tags(KeyValuePair<string, object?>[] pairs)
    {
        public readonly KeyValuePair<string, object?>[] Pairs = pairs;

        public string Labels(string constant)
        {
            var sb = new StringBuilder(constant);
            foreach (var (k, v) in Pairs) AppendLabel(sb, k, TagText(v));
            return sb.ToString();
        }
    }

    sealed class TagsComparer : IEqualityComparer<Tags>, IAlternateEqualityComparer<ReadOnlySpan<KeyValuePair<string, object?>>, Tags>
    {
        public static readonly TagsComparer Instance = new();

        public bool Equals(Tags? x, Tags? y) => ReferenceEquals(x, y) || (x is not null && y is not null && Equals(x.Pairs, y));
        public int GetHashCode(Tags t) => GetHashCode((ReadOnlySpan<KeyValuePair<string, object?>>)t.Pairs);

        public bool Equals(ReadOnlySpan<KeyValuePair<string, object?>> span, Tags t)
        {
            if (span.Length != t.Pairs.Length) return false;
            for (var i = 0; i < span.Length; i++)
                if (!string.Equals(span[i].Key, t.Pairs[i].Key, StringComparison.Ordinal) || !object.Equals(span[i].Value, t.Pairs[i].Value)) return false;
            return true;
        }

        public int GetHashCode(ReadOnlySpan<KeyValuePair<string, object?>> span)
        {
            var h = new HashCode();
            foreach (var (k, v) in span)
            {
                h.Add(k);
                h.Add(v);
            }
            return h.ToHashCode();
        }

        public Tags Create(ReadOnlySpan<KeyValuePair<string, object?>> span) => new(span.ToArray());
    }

    abstract class Family(Instrument instrument, string name, string type, bool observed)
    {
        public string Name { get; } = name;
        public string Type { get; } = type;
        public string Help { get; } = instrument.Description ?? "";
        /// <summary>Read at each scrape (observable instruments); its series are rebuilt each time.</summary>
        public bool Observed { get; } = observed;

        public abstract void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags);
        public abstract void Clear();
        public abstract void Write(StringBuilder sb, string constantLabels);

        public static Family? Create(Instrument i)
        {
            bool counter = i is Counter<long> or Counter<int> or Counter<double>,
                upDown = i is UpDownCounter<long> or UpDownCounter<int> or UpDownCounter<double>,
                observedCounter = i is ObservableCounter<long> or ObservableCounter<int> or ObservableCounter<double>,
                gauge = i is ObservableGauge<long> or ObservableGauge<int> or ObservableGauge<double>
                    or ObservableUpDownCounter<long> or ObservableUpDownCounter<int> or ObservableUpDownCounter<double>
                    or Gauge<long> or Gauge<int> or Gauge<double>;
            if (counter || upDown) return new SumFamily(i, MetricName(i.Name, i.Unit, counter), counter ? "counter" : "gauge", add: true, observed: false);
            if (observedCounter || gauge)
                return new SumFamily(i, MetricName(i.Name, i.Unit, observedCounter), observedCounter ? "counter" : "gauge", add: false, observed: i.IsObservable);
            var bounds = i switch
            {
                Histogram<double> h => h.Advice?.HistogramBucketBoundaries?.ToArray(),
                Histogram<long> h => h.Advice?.HistogramBucketBoundaries?.Select(b => (double)b).ToArray(),
                Histogram<int> h => h.Advice?.HistogramBucketBoundaries?.Select(b => (double)b).ToArray(),
                _ => null,
            };
            if (i is Histogram<double> or Histogram<long> or Histogram<int>) return new HistogramFamily(i, MetricName(i.Name, i.Unit, false), bounds ?? DefaultBuckets);
            return null;
        }
    }

    /// <summary>A family's series by tag set, each a <typeparamref name="TCell"/> created on first sight.</summary>
    abstract class SeriesFamily<TCell>(Instrument i, string name, string type, bool observed) : Family(i, name, type, observed)
        where TCell : class
    {
        protected readonly ConcurrentDictionary<Tags, TCell> _series = new(TagsComparer.Instance);

        protected abstract TCell NewCell();

        protected TCell CellFor(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var lookup = _series.GetAlternateLookup<ReadOnlySpan<KeyValuePair<string, object?>>>();
            if (lookup.TryGetValue(tags, out var cell)) return cell;
            var fresh = NewCell();
            return lookup.TryAdd(tags, fresh) ? fresh : lookup.TryGetValue(tags, out cell) ? cell : fresh;
        }

        public override void Clear() => _series.Clear();

        /// <summary>The series with their label text, sorted, so a scrape reads the same way each time.</summary>
        protected IEnumerable<(string Labels, TCell Cell)> Sorted(string constantLabels)
            => _series.Select(s => (s.Key.Labels(constantLabels), s.Value)).OrderBy(s => s.Item1, StringComparer.Ordinal);
    }

    /// <summary>Counters and up-down counters (added to), gauges and observed counters (set).</summary>
    sealed class SumFamily(Instrument i, string name, string type, bool add, bool observed) : SeriesFamily<SumFamily.Cell>(i, name, type, observed)
    {
        public sealed class Cell { public double Value; }

        protected override Cell NewCell() => new();

        public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var cell = CellFor(tags);
            if (add) AddDouble(ref cell.Value, value);
            else Volatile.Write(ref cell.Value, value);
        }

        public override void Write(StringBuilder sb, string constantLabels)
        {
            foreach (var (labels, cell) in Sorted(constantLabels))
            {
                sb.Append(Name);
                if (labels.Length > 0) sb.Append('{').Append(labels).Append('}');
                sb.Append(' ').Append(FormatValue(Volatile.Read(ref cell.Value))).Append('\n');
            }
        }
    }

    sealed class HistogramFamily(Instrument i, string name, double[] bounds) : SeriesFamily<HistogramFamily.Cell>(i, name, "histogram", observed: false)
    {
        public sealed class Cell(int buckets)
        {
            /// <summary>Per bucket, not cumulative; the last is above every bound.</summary>
            public readonly long[] Counts = new long[buckets];
            public double Sum;
        }

        readonly string[] _le = [.. bounds.Select(FormatValue), "+Inf"];

        protected override Cell NewCell() => new(bounds.Length + 1);

        public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var cell = CellFor(tags);
            // le is an inclusive upper bound: the first bucket whose bound is >= value.
            var b = 0;
            while (b < bounds.Length && value > bounds[b]) b++;
            Interlocked.Increment(ref cell.Counts[b]);
            AddDouble(ref cell.Sum, value);
        }

        public override void Write(StringBuilder sb, string constantLabels)
        {
            foreach (var (labels, cell) in Sorted(constantLabels))
            {
                var sep = labels.Length > 0 ? "," : "";
                long cumulative = 0;
                for (var b = 0; b < _le.Length; b++)
                {
                    cumulative += Volatile.Read(ref cell.Counts[b]);
                    sb.Append(Name).Append("_bucket{").Append(labels).Append(sep).Append("le=\"").Append(_le[b]).Append("\"} ").Append(cumulative).Append('\n');
                }
                var braces = labels.Length > 0 ? "{" + labels + "}" : "";
                sb.Append(Name).Append("_sum").Append(braces).Append(' ').Append(FormatValue(Volatile.Read(ref cell.Sum))).Append('\n');
                // The count is the +Inf bucket, so the two always agree even while measurements arrive.
                sb.Append(Name).Append("_count").Append(braces).Append(' ').Append(cumulative).Append('\n');
            }
        }
    }
}
