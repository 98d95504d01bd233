using Microsoft.Extensions.Logging;

namespace Conduit.Edge;

/// <summary>
/// The `log` key / CONDUIT_LOG: a default level and optional per-area levels, Conduit-style
/// ("warn", "info,Conduit.Rooms=debug"). Levels: trace, debug, info, warn, error, off.
/// </summary>
public static class LogConfig
{
    public static List<string> Apply(ILoggingBuilder logging, string spec)
    {
        var warnings = new List<string>();
        foreach (var raw in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = raw.IndexOf('=');
            var (area, levelName) = eq < 0 ? (null, raw) : (raw[..eq], raw[(eq + 1)..]);
            if (Parse(levelName) is not { } level)
            {
                warnings.Add($"log: unknown level '{levelName}' ignored");
                continue;
            }
            if (area is null) logging.SetMinimumLevel(level);
            else logging.AddFilter(area, level);
        }
        // The startup summary (StartupReport) says where the server listens, whatever the level. A start that
        // fails is reported by Program.cs: one line for a known cause, else the exception, so the host's own
        // "Hosting failed to start" error (with a stack trace) would only repeat it. A faulted BackgroundService
        // is still logged, at Critical with its exception.
        logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical);
        return warnings;
    }

    static LogLevel? Parse(string s) => s.ToLowerInvariant() switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "info" => LogLevel.Information,
        "warn" or "warning" => LogLevel.Warning,
        "error" => LogLevel.Error,
        "off" => LogLevel.None,
        _ => null,
    };
}
