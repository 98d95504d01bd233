using System.Globalization;
using System.Net;

namespace Conduit.LoadGen;

/// <summary>What a run measures; see README.md.</summary>
internal enum Scenario { Mixed, Saturate, OneRoom, RoomsParallel, BigSync, Idle, E2ee, Media, LazySync, SyncLoad, SlidingSync, Federation, Appservice }

/// <summary>Command-line options. Parsing errors throw <see cref="ArgumentException"/> with a readable message.</summary>
internal sealed class Options
{
    public Scenario Scenario { get; private set; } = Scenario.Mixed;
    public Uri Url { get; private set; } = new("http://127.0.0.1:6167");
    public int Users { get; private set; }
    public int Rooms { get; private set; }
    public int Seconds { get; private set; }
    /// <summary>Whether --seconds was given (e2ee: the to-device runs then last that long instead of --events sends).</summary>
    public bool SecondsGiven { get; private set; }
    public int IntervalMs { get; private set; }
    public int DrainSeconds { get; private set; } = 10;
    public int SetupTimeoutSeconds { get; private set; }
    public int SetupConcurrency { get; private set; }
    public int Events { get; private set; }
    public int OneTimeKeys { get; private set; } = 5000;
    public int Senders { get; private set; } = 10;
    /// <summary>appservice: sends per second over all senders; 0: each sender back to back.</summary>
    public int Rate { get; private set; }
    /// <summary>appservice: "aio" (one process) or "split" (scripts/split-up.sh) for the server it starts.</summary>
    public string Mode { get; private set; } = "aio";
    /// <summary>appservice: the split-up.sh that starts a split server (default: the checkout's, found above the build,
    /// the current directory or the load generator).</summary>
    public string? SplitUp { get; private set; }
    public int Warmup { get; private set; } = 1000;
    public int Repeat { get; private set; } = 5;
    /// <summary>media: 100 KB files uploaded, then downloaded, per run.</summary>
    public int Files { get; private set; } = 3000;
    /// <summary>media: downloads per run, spread evenly over the uploaded files.</summary>
    public int Downloads { get; private set; } = 10000;
    /// <summary>media: passes of warm thumbnail requests over the images.</summary>
    public int WarmPasses { get; private set; } = 10;
    /// <summary>media: size of each of those files, in KB (1000 bytes).</summary>
    public int FileKb { get; private set; } = 100;
    /// <summary>media: distinct JPEG images uploaded per run, then thumbnailed cold and warm.</summary>
    public int Images { get; private set; } = 200;
    /// <summary>media: concurrent thumbnail requests.</summary>
    public int ThumbnailConcurrency { get; private set; } = 4;
    /// <summary>media: size of the large upload and download, in MB (10^6 bytes); 0 skips it.</summary>
    public int BigMb { get; private set; } = 200;
    public int WarmupSeconds { get; private set; }
    public int PhaseTimeoutSeconds { get; private set; } = 120;
    public List<int> Pids { get; } = [];
    public Dictionary<int, string> PidNames { get; } = [];
    public string? RegistrationToken { get; private set; }
    public string? ResultsPath { get; private set; }
    /// <summary>--ack-log FILE: every acknowledged message send (mixed/saturate), one line each as it is acknowledged.</summary>
    public string? AckLogPath { get; private set; }
    /// <summary>federation: the server build to start (a conduit.dll or an executable); null: CONDUIT_BIN, CONDUIT_DLL, or
    /// the Release build beside the load generator's.</summary>
    public string? Conduit { get; private set; }
    /// <summary>federation: the servers of the dead-peers part (one stays alive).</summary>
    public int Peers { get; private set; } = 20;
    /// <summary>federation: messages sent by the room's server in the dead-peers part.</summary>
    public int PeerEvents { get; private set; } = 1000;
    /// <summary>federation: messages in the big room before the remote join.</summary>
    public int RoomEvents { get; private set; } = 10000;
    /// <summary>federation: remote joins into the dead-peers room at once.</summary>
    public int JoinConcurrency { get; private set; } = 1;
    /// <summary>federation: the parts to run, in order.</summary>
    public List<string> Parts { get; private set; } = [.. FederationParts];
    /// <summary>federation: where the servers' configs, databases and logs go (default a new temp directory, removed
    /// after the run); the databases are removed either way, the logs kept when given.</summary>
    public string? WorkDir { get; private set; }

    public static readonly string[] FederationParts = ["one-peer", "dead-peers", "big-join"];

    public string PidName(int pid) => PidNames.GetValueOrDefault(pid) ?? pid.ToString(CultureInfo.InvariantCulture);

    public static string ScenarioName(Scenario s) => s switch
    {
        Scenario.Mixed => "mixed",
        Scenario.Saturate => "saturate",
        Scenario.OneRoom => "one-room",
        Scenario.RoomsParallel => "rooms-parallel",
        Scenario.BigSync => "big-sync",
        Scenario.Idle => "idle",
        Scenario.E2ee => "e2ee",
        Scenario.Media => "media",
        Scenario.LazySync => "lazy-sync",
        Scenario.SyncLoad => "sync-load",
        Scenario.SlidingSync => "sliding-sync",
        Scenario.Federation => "federation",
        Scenario.Appservice => "appservice",
        _ => throw new ArgumentOutOfRangeException(nameof(s)),
    };

    public const string Usage = """
        Conduit.LoadGen: drives a homeserver on this machine and reports throughput, latency and server memory.

        Scenarios (--scenario NAME):
          mixed           (default) every user /syncs in a loop and sends a message every --interval-ms;
                          events/s, send 200 -> /sync delivery latency, RSS idle and peak
          saturate        mixed with --interval-ms 0: every user sends back to back (default 20 s)
          one-room        one room of --senders members: --events sends by one client in sequence, then
                          --events sends from --senders concurrent clients; time, events/s, ratio
          rooms-parallel  --rooms rooms with the same --rooms members: --events sends into one room from --rooms
                          concurrent clients, then --events sends spread over the rooms, one client per room
          big-sync        one user creates --rooms rooms (default 5000), then a first /sync?timeout=0: time,
                          response size, server RSS before, peak during, after, and 5 s after
          idle            server RSS at start, 3 s after one registration and one /sync, 10 s after (settled), and 10 s
                          after a createRoom, 10 sends and an incremental /sync (after use)
          e2ee            three figures, each over --repeat runs: /keys/claim per second (--senders clients claim
                          the --one-time-keys keys of one device until they are gone, then get its fallback key);
                          to-device messages per second end to end (--senders senders, --events messages to one
                          device that long-polls /sync); /keys/query time for --users users (default 1000) who share
                          --rooms rooms (default 10) with the querier
          media           the media service through the edge, over --repeat runs (default 3): uploads/s of --files
                          distinct --file-kb KB files (--senders clients), downloads/s of them (bytes checked);
                          thumbnails/s cold and warm (--images distinct 1600x1200 JPEGs, 320x240 scale,
                          --thumbnail-concurrency at once); server RSS (sampled and VmHWM) during a --big-mb MB
                          upload and its download (the server needs max_request_size above it)
          lazy-sync       one user in --rooms public rooms (300) of --users members each (300, the user among them;
                          the others join every room, --setup-concurrency joins at once; then --events messages
                          a room, 10, by as many members): its initial /sync with
                          lazy-loaded members, --repeat times (5): median time, response size, server RSS before,
                          peak and after; then one /sync without lazy loading for comparison
          sync-load       --users users (100) long-poll /sync in --rooms shared rooms (10, spread round-robin) while
                          --senders users (10, members of every room) each act every --interval-ms (100): typing on,
                          a message, typing off, a read receipt, in turn, in one room at a time; time from each
                          action to the /sync response that brings it to each member (p50/p99 per kind), syncs/s
          sliding-sync    one user in --rooms rooms (1000) with Element X's sliding sync room list (range [0, 19],
                          timeline_limit 1): time to the first response, --repeat times (5); then --events (300)
                          messages sent one at a time into 10 of its rooms, each timed from its 200 to its arrival
                          in the user's waiting sliding sync request, while --senders users (10) send every
                          --interval-ms (500) into 10 other rooms: p50/p99
          federation      starts its own servers (HTTPS, a CA of its own, fresh databases; --url is not used):
                          one-peer: --events (2000) messages by --senders on A to a room joined from B, and back:
                          send rate and end-to-end rate (first send to B's /sync holding all); dead-peers: a room
                          on A joined from --peers servers (20), all but one then killed (SIGKILL), --peer-events
                          (1000) messages on A: send rate, time until the live peer has them; big-join: a room on A
                          of --users members (1000) and --room-events messages (10000), joined from B: the join's
                          time, joined_members on B, B's first /sync
          appservice      starts an appservice listener (127.0.0.1, port from the system), writes its registration,
                          then its own server (--mode aio or split, fresh database; --url is not used) naming it;
                          --senders users (5) send --events messages (3000) into a room where a puppet of the
                          appservice is joined, back to back (or at --rate per second): events/s delivered to the
                          appservice, transactions and events per transaction, send 200 -> transaction arrival
                          p50/p90/p99/max; every event exactly once, in the server's order (exit 1 otherwise)

        Options:
          --url URL                  homeserver base URL, loopback only (default http://127.0.0.1:6167)
          --users N                  users to register (mixed/saturate 100); one-room: members of the room (default
                                     --senders); rooms-parallel: members of every room (default --rooms); e2ee: users
                                     sharing rooms with the querier, the senders among them (default 1000); lazy-sync:
                                     members of every room (300); sync-load: syncing users (100)
          --rooms M                  rooms (mixed/saturate 10, users spread round-robin; rooms-parallel 10; big-sync 5000;
                                     e2ee: the querier's rooms, 10; lazy-sync 300; sync-load 10;
                                     sliding-sync: the viewer's rooms, 1000)
          --seconds S                length of the send phase (mixed 30, saturate 20); e2ee: each to-device run
                                     sends for S seconds instead of --events messages
          --interval-ms MS           mean time between two messages of one user (mixed 1500, jittered +-25%; saturate 0);
                                     sync-load: between two actions of one sender (100); sliding-sync: between two
                                     messages of one background sender (500)
          --drain-seconds D          after sending stops, how long to wait for outstanding deliveries (default 10);
                                     appservice: how long without a new arrival before giving up
          --events N                 sends per timed phase of one-room and rooms-parallel (default 500); e2ee:
                                     to-device messages per run (default 5000); lazy-sync: messages a room (10);
                                     sliding-sync: timed sends (300); appservice: timed messages (3000)
          --senders N                concurrent senders of one-room; e2ee: concurrent claimers and to-device
                                     senders; media: concurrent uploaders and downloaders; sync-load: users acting,
                                     besides the --users syncing ones; sliding-sync: background senders (default 10);
                                     appservice: users sending into the room (5)
          --files N                  media: files uploaded per run (default 3000)
          --downloads N              media: downloads per run, spread evenly over those files (default 10000)
          --file-kb K                media: size of each of those files in KB (default 100)
          --images M                 media: distinct JPEG images uploaded, then thumbnailed, per run (default 200)
          --warm-passes P            media: warm thumbnail requests are P passes over the images (default 10)
          --thumbnail-concurrency C  media: thumbnail requests at once (default 4)
          --big-mb B                 media: size of the large upload and download in MB (default 200; 0: skipped)
          --one-time-keys N          e2ee: one-time keys uploaded, then claimed, per run (default 5000)
          --warmup N                 untimed sends in each pattern before the timed phases of one-room and
                                     rooms-parallel, then 1 s of rest (default 1000); e2ee: one untimed run of N keys
                                     and one of N to-device messages; media: N untimed uploads and downloads and
                                     --thumbnail-concurrency images thumbnailed (default 100); federation: untimed
                                     messages each way before the one-peer figures (default 200); appservice: untimed
                                     messages sent and delivered before the timed ones (200)
          --repeat R                 one-room/rooms-parallel: run the two patterns R times, alternating, and report
                                     the median of each; e2ee: runs of each of the three measures (default 5);
                                     media: runs of each measure (default 3); lazy-sync: timed initial syncs (5);
                                     sliding-sync: first responses (5)
          --warmup-seconds W         mixed/saturate/sync-load: act for W s before the measured --seconds (mixed 0,
                                     saturate 5, sync-load 5)
          --phase-timeout-seconds T  bound on each timed phase of one-room, rooms-parallel, big-sync, e2ee and media
                                     (default 120)
          --setup-timeout-seconds T  bound on registration + room setup + initial syncs (default 300; big-sync 1200;
                                     lazy-sync 3600)
          --setup-concurrency C      parallel requests during setup (default 8; big-sync 4; lazy-sync 16)
          --pid P                    server process to read VmRSS from (/proc/P/status); repeatable
          --pids P1[:NAME],P2,...    several server processes (split mode); RSS is summed, NAME labels the breakdown
          --registration-token TOK   complete registration with m.login.registration_token
          --conduit PATH             federation, appservice: the server to start, a conduit.dll or executable (default
                                     CONDUIT_BIN, CONDUIT_DLL, else the Release build beside this one)
          --peers P                  federation: servers joining the dead-peers room, all but one killed (20)
          --peer-events N            federation: messages sent in the dead-peers part (1000)
          --join-concurrency J       federation: remote joins into the dead-peers room at once (1)
          --room-events N            federation: messages in the big room before the join (10000)
          --parts LIST               federation: parts to run (one-peer,dead-peers,big-join)
          --work-dir DIR             federation, appservice: servers' configs, databases and logs (default a temp dir)
          --mode aio|split           appservice: the server it starts, all-in-one (default) or split (split-up.sh)
          --split-up PATH            appservice: scripts/split-up.sh for --mode split (default: the checkout's,
                                     found above the build, the current directory or the load generator)
          --rate R                   appservice: sends per second over all senders (default 0: back to back)
          --results FILE             also write the headline figures to FILE as "label<TAB>value" lines
          --ack-log FILE             (mixed, saturate) append "unix_ms<TAB>room_id<TAB>event_id<TAB>access_token" for every
                                     message send the server acknowledged, as it is acknowledged (backup tests)
          -h, --help                 this text
        """;

    public static Options? Parse(string[] args)
    {
        var o = new Options();
        int? senders = null;
        int? users = null, rooms = null, seconds = null, intervalMs = null, setupTimeout = null, setupConcurrency = null, warmupSeconds = null,
            events = null, repeat = null, warmup = null;
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
                case "--scenario":
                    var name = Next();
                    o.Scenario = Enum.GetValues<Scenario>().Cast<Scenario?>().FirstOrDefault(s => ScenarioName(s!.Value) == name)
                        ?? throw new ArgumentException($"--scenario '{name}' is not one of " +
                            string.Join(", ", Enum.GetValues<Scenario>().Select(ScenarioName)));
                    break;
                case "--url":
                    o.Url = ParseLoopbackUrl(Next());
                    break;
                case "--users":
                    users = NextInt(1);
                    break;
                case "--rooms":
                    rooms = NextInt(1);
                    break;
                case "--seconds":
                    seconds = NextInt(1);
                    break;
                case "--interval-ms":
                    intervalMs = NextInt(0);
                    break;
                case "--drain-seconds":
                    o.DrainSeconds = NextInt(0);
                    break;
                case "--events":
                    events = NextInt(1);
                    break;
                case "--one-time-keys":
                    o.OneTimeKeys = NextInt(1);
                    break;
                case "--senders":
                    senders = NextInt(1);
                    break;
                case "--warmup":
                    warmup = NextInt(0);
                    break;
                case "--repeat":
                    repeat = NextInt(1);
                    break;
                case "--files":
                    o.Files = NextInt(1);
                    break;
                case "--downloads":
                    o.Downloads = NextInt(1);
                    break;
                case "--warm-passes":
                    o.WarmPasses = NextInt(1);
                    break;
                case "--file-kb":
                    o.FileKb = NextInt(1);
                    break;
                case "--images":
                    o.Images = NextInt(1);
                    break;
                case "--thumbnail-concurrency":
                    o.ThumbnailConcurrency = NextInt(1);
                    break;
                case "--big-mb":
                    o.BigMb = NextInt(0);
                    break;
                case "--warmup-seconds":
                    warmupSeconds = NextInt(0);
                    break;
                case "--phase-timeout-seconds":
                    o.PhaseTimeoutSeconds = NextInt(1);
                    break;
                case "--setup-timeout-seconds":
                    setupTimeout = NextInt(1);
                    break;
                case "--setup-concurrency":
                    setupConcurrency = NextInt(1);
                    break;
                case "--pid":
                    o.AddPid(Next());
                    break;
                case "--pids":
                    foreach (var p in Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                        o.AddPid(p);
                    break;
                case "--registration-token":
                    o.RegistrationToken = Next();
                    break;
                case "--results":
                    o.ResultsPath = Next();
                    break;
                case "--ack-log":
                    o.AckLogPath = Next();
                    break;
                case "--conduit":
                    o.Conduit = Next();
                    break;
                case "--peers":
                    o.Peers = NextInt(2);
                    break;
                case "--peer-events":
                    o.PeerEvents = NextInt(1);
                    break;
                case "--join-concurrency":
                    o.JoinConcurrency = NextInt(1);
                    break;
                case "--room-events":
                    o.RoomEvents = NextInt(0);
                    break;
                case "--parts":
                    o.Parts = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
                    if (o.Parts.Count == 0 || o.Parts.Any(x => !FederationParts.Contains(x)))
                        throw new ArgumentException($"--parts: '{string.Join(",", o.Parts)}' is not a list of {string.Join(", ", FederationParts)}");
                    break;
                case "--mode":
                    o.Mode = Next();
                    if (o.Mode is not ("aio" or "split")) throw new ArgumentException($"--mode: '{o.Mode}' is not aio or split");
                    break;
                case "--split-up":
                    o.SplitUp = Next();
                    break;
                case "--rate":
                    o.Rate = NextInt(0);
                    break;
                case "--work-dir":
                    o.WorkDir = Path.GetFullPath(Next());
                    break;
                default:
                    throw new ArgumentException($"unknown argument '{args[i]}'");
            }
        }

        var appservice = o.Scenario == Scenario.Appservice;
        o.Senders = senders ?? (appservice ? 5 : 10);
        var saturate = o.Scenario == Scenario.Saturate;
        var bigSync = o.Scenario == Scenario.BigSync;
        var e2ee = o.Scenario == Scenario.E2ee;
        var lazySync = o.Scenario == Scenario.LazySync;
        var syncLoad = o.Scenario == Scenario.SyncLoad;
        var sliding = o.Scenario == Scenario.SlidingSync;
        if (saturate && intervalMs is > 0)
            throw new ArgumentException("--interval-ms does not apply to --scenario saturate (it sends back to back); use mixed");
        o.Users = users ?? o.Scenario switch
        {
            Scenario.Mixed or Scenario.Saturate => 100,
            Scenario.OneRoom => o.Senders,
            Scenario.RoomsParallel => rooms ?? 10,
            Scenario.E2ee => 1000,
            Scenario.Media => o.Senders,
            Scenario.LazySync => 300,
            Scenario.SyncLoad => 100,
            Scenario.Federation => 1000,
            Scenario.Appservice => o.Senders,
            _ => 1,
        };
        o.Rooms = rooms ?? (bigSync ? 5000 : lazySync ? 300 : sliding ? 1000 : 10);
        o.Seconds = seconds ?? (saturate ? 20 : 30);
        o.SecondsGiven = seconds is not null;
        o.Events = events ?? (e2ee ? 5000 : lazySync ? 10 : sliding ? 300 : o.Scenario == Scenario.Federation ? 2000 : appservice ? 3000 : 500);
        o.Repeat = repeat ?? (o.Scenario == Scenario.Media ? 3 : 5);
        o.Warmup = warmup ?? (o.Scenario == Scenario.Media ? 100 : o.Scenario == Scenario.Federation || appservice ? 200 : 1000);
        o.IntervalMs = intervalMs ?? (saturate ? 0 : syncLoad ? 100 : sliding ? 500 : 1500);
        o.WarmupSeconds = warmupSeconds ?? (saturate || syncLoad ? 5 : 0);
        o.SetupTimeoutSeconds = setupTimeout ?? (bigSync ? 1200 : lazySync ? 3600 : o.Scenario == Scenario.Federation ? 600 : 300);
        o.SetupConcurrency = setupConcurrency ?? (bigSync ? 4 : lazySync ? 16 : 8);

        if (o.Scenario is Scenario.Mixed or Scenario.Saturate && o.Rooms > o.Users)
            throw new ArgumentException($"--rooms ({o.Rooms}) must not exceed --users ({o.Users}): every room needs a creator");
        if (o.Scenario == Scenario.OneRoom && o.Users < o.Senders)
            throw new ArgumentException($"--users ({o.Users}) must be at least --senders ({o.Senders}): every sender is a member");
        if (o.Scenario == Scenario.RoomsParallel && o.Users < o.Rooms)
            throw new ArgumentException($"--users ({o.Users}) must be at least --rooms ({o.Rooms}): one sender per room");
        if (o.Scenario is Scenario.E2ee or Scenario.Media && o.Users < o.Senders)
            throw new ArgumentException($"--users ({o.Users}) must be at least --senders ({o.Senders}): the senders are among the users");
        if (syncLoad && o.Rooms > o.Users)
            throw new ArgumentException($"--rooms ({o.Rooms}) must not exceed --users ({o.Users}): every room needs a syncing member");
        if ((syncLoad || sliding) && o.IntervalMs == 0)
            throw new ArgumentException($"--interval-ms must be above 0 for {ScenarioName(o.Scenario)}");
        if (sliding && o.Rooms < 20)
            throw new ArgumentException("--rooms must be at least 20 for sliding-sync (10 rooms for the measured sender, 10 for the others)");
        if (appservice && o.Users < o.Senders)
            throw new ArgumentException($"--users ({o.Users}) must be at least --senders ({o.Senders}): the senders are among the users");
        if (e2ee && o.Rooms > o.Users)
            throw new ArgumentException($"--rooms ({o.Rooms}) must not exceed --users ({o.Users}): every room needs members");
        return o;
    }

    void AddPid(string s)
    {
        var colon = s.IndexOf(':');
        var pid = ParsePid(colon < 0 ? s : s[..colon]);
        Pids.Add(pid);
        if (colon >= 0 && s[(colon + 1)..] is { Length: > 0 } name) PidNames[pid] = name;
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
