using System.Globalization;
using System.Net;

namespace Conduit.LoadGen;

/// <summary>Command-line options. Parsing errors throw <see cref="ArgumentException"/> with a readable message.</summary>
internal sealed class Options
{
    public Uri Url { get; private set; } = new("http://127.0.0.1:6167");
    public int Users { get; private set; } = 100;
    public int Rooms { get; private set; } = 10;
    public int Seconds { get; private set; } = 30;
    public int IntervalMs { get; private set; } = 1500;
    public int DrainSeconds { get; private set; } = 10;
    public int SetupTimeoutSeconds { get; private set; } = 300;
    public int SetupConcurrency { get; private set; } = 8;
    public List<int> Pids { get; } = [];
    public string? RegistrationToken { get; private set; }

    public const string Usage = """
        Conduit.LoadGen: registers users, puts them in rooms, then has every user /sync in a loop and send
        messages, measuring send-200 -> /sync delivery latency and server memory.

        Options:
          --url URL                  homeserver base URL, loopback only (default http://127.0.0.1:6167)
          --users N                  number of users to register (default 100)
          --rooms M                  number of rooms; users are spread round-robin (default 10)
          --seconds S                length of the send phase (default 30)
          --interval-ms MS           mean time between two messages of one user (default 1500; jittered +-25%)
          --drain-seconds D          after sending stops, how long to wait for outstanding deliveries (default 10)
          --setup-timeout-seconds T  bound on registration + room setup + initial syncs (default 300)
          --setup-concurrency C      parallel requests during setup (default 8)
          --pid P                    server process to read VmRSS from (/proc/P/status); repeatable
          --pids P1,P2,...           several server processes (split mode); RSS is summed
          --registration-token TOK   complete registration with m.login.registration_token
          -h, --help                 this text
        """;

    public static Options? Parse(string[] args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            var a = args[i];
            string? inlineValue = null;
            var eq = a.IndexOf('=');
            if (a.StartsWith("--", StringComparison.Ordinal) && eq > 0)
            {
                inlineValue = a[(eq + 1)..];
                a = a[..eq];
            }

            string Next()
            {
                if (inlineValue is not null) return inlineValue;
                if (i + 1 >= args.Length) throw new ArgumentException($"{a} needs a value");
                return args[++i];
            }

            int NextInt(int min)
            {
                var s = Next();
                if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) || v < min)
                    throw new ArgumentException($"{a}: '{s}' is not an integer >= {min}");
                return v;
            }

            switch (a)
            {
                case "-h":
                case "--help":
                    return null;
                case "--url":
                    o.Url = ParseLoopbackUrl(Next());
                    break;
                case "--users":
                    o.Users = NextInt(1);
                    break;
                case "--rooms":
                    o.Rooms = NextInt(1);
                    break;
                case "--seconds":
                    o.Seconds = NextInt(1);
                    break;
                case "--interval-ms":
                    o.IntervalMs = NextInt(10);
                    break;
                case "--drain-seconds":
                    o.DrainSeconds = NextInt(0);
                    break;
                case "--setup-timeout-seconds":
                    o.SetupTimeoutSeconds = NextInt(1);
                    break;
                case "--setup-concurrency":
                    o.SetupConcurrency = NextInt(1);
                    break;
                case "--pid":
                    o.Pids.Add(ParsePid(Next()));
                    break;
                case "--pids":
                    foreach (var p in Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                        o.Pids.Add(ParsePid(p));
                    break;
                case "--registration-token":
                    o.RegistrationToken = Next();
                    break;
                default:
                    throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }

        if (o.Rooms > o.Users)
            throw new ArgumentException($"--rooms ({o.Rooms}) must not exceed --users ({o.Users}): every room needs a creator");
        return o;
    }

    private static int ParsePid(string s)
    {
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid) || pid <= 0)
            throw new ArgumentException($"'{s}' is not a process id");
        return pid;
    }

    /// <summary>
    /// Accepts only http(s) URLs whose host is localhost, 127.0.0.0/8 or [::1]: load is only ever sent to this machine.
    /// </summary>
    internal static Uri ParseLoopbackUrl(string s)
    {
        if (!Uri.TryCreate(s, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            throw new ArgumentException($"--url '{s}' is not an absolute http(s) URL");
        var host = uri.IdnHost.Trim('[', ']');
        var loopback = string.Equals(host, "localhost", StringComparison.OrdinalIgnoreCase)
            || (IPAddress.TryParse(host, out var ip) && IPAddress.IsLoopback(ip));
        if (!loopback)
            throw new ArgumentException(
                $"--url host '{uri.Host}' is not a loopback address. This load generator only targets a server on this " +
                "machine (localhost, 127.0.0.0/8 or [::1]) so that it can never flood another host.");
        var text = uri.GetLeftPart(UriPartial.Authority) + uri.AbsolutePath.TrimEnd('/') + "/";
        return new Uri(text);
    }
}
