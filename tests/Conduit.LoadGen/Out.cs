using System.Globalization;

namespace Conduit.LoadGen;

/// <summary>Progress (stderr) and report lines (stdout), shared by every scenario.</summary>
internal static class Out
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Log(string message) =>
        Console.Error.WriteLine($"[{DateTime.Now.ToString("HH:mm:ss.fff", Inv)}] {message}");

    public static void Line(string key, string value) => Console.WriteLine($"{key + ":",-22}{value}");

    public static string F(double v, string format = "0.0") => v.ToString(format, Inv);

    /// <summary>Nearest-rank percentile; null when empty. Sorts <paramref name="values"/> in place.</summary>
    public static double? Percentile(List<double> values, double p)
    {
        if (values.Count == 0) return null;
        values.Sort();
        return values[Math.Clamp((int)Math.Ceiling(p * values.Count) - 1, 0, values.Count - 1)];
    }

    /// <summary>"p50 .. p90 .. p99 .. max .. (n=..)"; sorts <paramref name="values"/> in place.</summary>
    public static string Dist(List<double> values)
    {
        if (values.Count == 0) return "n/a (no samples)";
        values.Sort();
        return $"p50 {F(Percentile(values, 0.50)!.Value)}  p90 {F(Percentile(values, 0.90)!.Value)}  p99 {F(Percentile(values, 0.99)!.Value)}  " +
               $"max {F(values[^1])}  (n={values.Count})";
    }

    /// <summary>Cancels <paramref name="run"/> on Ctrl-C and on SIGTERM (logged), so that a run stopped from outside
    /// still cleans up (servers it started) and reports; dispose to stop listening for SIGTERM.</summary>
    public static IDisposable CancelOnSignals(CancellationTokenSource run)
    {
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Log("interrupted: stopping");
            try { run.Cancel(); } catch (ObjectDisposedException) { }
        };
        return System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, ctx =>
        {
            ctx.Cancel = true;
            Log("SIGTERM: stopping");
            try { run.Cancel(); } catch (ObjectDisposedException) { }
        });
    }

    /// <summary>The failed requests by kind, then the 429s that were waited out.</summary>
    public static void PrintErrors(MatrixApi? api)
    {
        if (api is null || api.Errors.IsEmpty)
            Line("errors", "none");
        else
        {
            Line("errors", api.Errors.Values.Sum().ToString(Inv));
            foreach (var (key, n) in api.Errors.OrderByDescending(kv => kv.Value).ThenBy(kv => kv.Key, StringComparer.Ordinal))
                Console.WriteLine($"  {n,8}  {key}");
        }
        if (api is not null && !api.RateLimited.IsEmpty)
            Line("429 retried", $"{api.RateLimited.Values.Sum()} (" +
                string.Join(", ", api.RateLimited.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} {kv.Value}")) + ")");
    }
}

/// <summary>
/// The headline figures of a run, written with --results FILE as "label TAB value" lines in a fixed order, so that
/// scripts/bench.sh can put runs side by side without knowing each scenario's figures.
/// </summary>
internal sealed class Results
{
    readonly List<(string Label, string Value)> _rows = [];

    public void Add(string label, double? value, string format = "0.0") =>
        _rows.Add((label, value is { } v ? Out.F(v, format) : "n/a"));

    public void Add(string label, string value) => _rows.Add((label, value));

    /// <summary>Errors and 429s, the last rows of every scenario.</summary>
    public void AddRequestCounts(MatrixApi api)
    {
        Add("errors", api.Errors.Values.Sum(), "0");
        Add("429 retried", api.RateLimited.Values.Sum(), "0");
    }

    public void Save(string? path)
    {
        if (path is null) return;
        File.WriteAllLines(path, _rows.Select(r => $"{r.Label}\t{r.Value}"));
    }
}
