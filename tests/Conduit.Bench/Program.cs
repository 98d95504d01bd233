using System.Diagnostics;
using System.Text.Json.Nodes;
using Conduit.Common.Config;
using Conduit.Common.Grpc;
using Conduit.Common.Storage;
using Conduit.Federation;
using Conduit.Rooms;

// Big room benchmark: create a room, have N users join it, then send M messages, through EventSender (the one
// writer of room events: auth rules, signing, state groups, durable batches), on a real database.
//   dotnet run --project tests/Conduit.Bench -c Release -- [--members 10000] [--messages 1000] [--backend rocksdb|sqlite]
//                                                        [--cache-capacity BYTES]   (RocksDB's budget, as cache_capacity)
//                                                        [--push]   (then evaluate push rules for those messages)
// --push: the sync service's push worker over the messages, as it runs in the server: rooms' PushFeed (in process),
// every member's rules (the defaults) for every message, and the durable batch of unread entries and notifications.
var members = 10_000;
var messages = 1_000;
var backend = "rocksdb";
var push = false;
var storeOptions = StoreOptions.Default;
for (var i = 0; i < args.Length - 1; i++)
{
    switch (args[i])
    {
        case "--members": members = int.Parse(args[++i]); break;
        case "--messages": messages = int.Parse(args[++i]); break;
        case "--backend": backend = args[++i]; break;
        case "--cache-capacity": storeOptions = new StoreOptions { CacheCapacity = long.Parse(args[++i]) }; break;
    }
}
push = args.Contains("--push");

var dir = Directory.CreateTempSubdirectory("conduit-bench-").FullName;
var config = new GlobalConfig { ServerName = "bench.local" };
var families = RoomsFamilies.All.Concat(FederationFamilies.All).Concat(Conduit.Sync.SyncFamilies.All).ToList();
using var store = KvStore.Open(backend, backend == "sqlite" ? Path.Combine(dir, "bench.sqlite") : dir, families, storeOptions);
using var keys = new ServerKeys(store, config);
var fed = new Conduit.Protos.Federation.Federation.FederationClient(
    InProcessCallInvoker.Create(null, b => Conduit.Protos.Federation.Federation.BindService(b, new FederationGrpcService(keys, null!, null!, null!, null!, null!))).WithMatrixErrors());
var rooms = new RoomStore(store);
var states = new StateStore(store);
var stream = new RoomStream(rooms);
using var writer = new RoomWriter(rooms, states, stream, config, Microsoft.Extensions.Logging.Abstractions.NullLogger<RoomWriter>.Instance);
using var signer = new EventSigner(fed, Microsoft.Extensions.Logging.Abstractions.NullLogger<EventSigner>.Instance);
var sender = new EventSender(rooms, states, writer, signer, config, Microsoft.Extensions.Logging.Abstractions.NullLogger<EventSender>.Instance);

static double RssMb() => File.ReadLines("/proc/self/status").Where(l => l.StartsWith("VmRSS:")).Select(l => long.Parse(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0).FirstOrDefault();
static long DirBytes(string d) => new DirectoryInfo(d).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);

const string Room = "!big:bench.local";
const string Creator = "@creator:bench.local";
var peak = RssMb();
using var sampler = new Timer(_ => peak = Math.Max(peak, RssMb()), null, 0, 100);
Console.WriteLine($"backend {backend}, {members} members, {messages} messages, cache_capacity {storeOptions.CacheCapacity}; database in {dir}");
Console.WriteLine($"RSS at start: {RssMb():F1} MB");

var sw = Stopwatch.StartNew();
await sender.SendAsync(Room, Creator,
[
    new NewEvent("m.room.create", "", new JsonObject { ["room_version"] = "11" }),
    new NewEvent("m.room.member", Creator, new JsonObject { ["membership"] = "join" }),
    new NewEvent("m.room.power_levels", "", new JsonObject { ["users"] = new JsonObject { [Creator] = 100 } }),
    new NewEvent("m.room.join_rules", "", new JsonObject { ["join_rule"] = "public" }),
    new NewEvent("m.room.history_visibility", "", new JsonObject { ["history_visibility"] = "shared" }),
], null, CancellationToken.None);
for (var i = 0; i < members; i++)
{
    var user = $"@user{i}:bench.local";
    await sender.SendAsync(Room, user, [new NewEvent("m.room.member", user, new JsonObject { ["membership"] = "join", ["displayname"] = $"User {i}" })], null, CancellationToken.None);
    if ((i + 1) % 2000 == 0) Console.WriteLine($"  {i + 1} joined, {sw.Elapsed.TotalSeconds:F1} s, RSS {RssMb():F1} MB");
}
var joinTime = sw.Elapsed;
Console.WriteLine($"room with {members} members: {joinTime.TotalSeconds:F1} s ({members / joinTime.TotalSeconds:F0} joins/s), RSS {RssMb():F1} MB");

sw.Restart();
var beforeMessages = stream.Position;
for (var i = 0; i < messages; i++)
{
    var user = $"@user{i % members}:bench.local";
    await sender.SendAsync(Room, user, [new NewEvent("m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = $"message {i}" })], null, CancellationToken.None);
}
var sendTime = sw.Elapsed;
Console.WriteLine($"{messages} messages: {sendTime.TotalSeconds:F2} s ({messages / sendTime.TotalSeconds:F0} events/s)");

sw.Restart();
var info = rooms.Info(Room)!;
var current = states.Full(info["state_group"]!.GetValue<ulong>());
Console.WriteLine($"full state of the current group: {current.Count} entries in {sw.ElapsedMilliseconds} ms");

// Storage of the room's state: every state group written, versus one full copy of the state per state event.
var groups = rooms.Timeline(Room, 0, long.MaxValue, false).Select(t => rooms.Event(t.EventId)!).Where(e => e.StateKey is not null).Select(e => e.StateAfter).ToList();
var groupBytes = states.GroupBytes(groups);
var naive = 0L;
for (var n = 1; n <= groups.Count; n++) naive += 16L * n;
await Task.Delay(200);
Console.WriteLine($"state groups: {groups.Count} groups, {groupBytes / 1024.0:F0} KiB (a copy of the state per state event would be {naive / 1024.0 / 1024.0:F0} MiB)");
Console.WriteLine($"database on disk: {DirBytes(dir) / 1024.0 / 1024.0:F1} MiB; RSS peak {peak:F1} MB, now {RssMb():F1} MB");

if (push)
{
    var nullLog = Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance;
    var grpc = new RoomsGrpcService(rooms, stream, null!, sender, null!, new PushFeed(rooms, stream, config), null!, null!, null!, config, null!, null!);
    var roomsClient = new Conduit.Protos.Rooms.Rooms.RoomsClient(
        InProcessCallInvoker.Create(null, b => Conduit.Protos.Rooms.Rooms.BindService(b, grpc)).WithMatrixErrors());
    var pushStore = new Conduit.Sync.Push.PushStore(store, new Conduit.Sync.ReceiptStore(store));
    var worker = new Conduit.Sync.Push.PushWorker(pushStore, new Conduit.Sync.AccountDataStore(store),
        new Conduit.Sync.SyncNotifier(roomsClient, null!, Microsoft.Extensions.Logging.Abstractions.NullLogger<Conduit.Sync.SyncNotifier>.Instance), roomsClient,
        new Conduit.Sync.Push.PushSender(pushStore, config, Microsoft.Extensions.Logging.Abstractions.NullLogger<Conduit.Sync.Push.PushSender>.Instance), config,
        Microsoft.Extensions.Logging.Abstractions.NullLogger<Conduit.Sync.Push.PushWorker>.Instance, null!);

    // The whole pipeline, as the server runs it: feed batches of 200, evaluation, one durable batch each.
    sw.Restart();
    var feedTime = TimeSpan.Zero;
    var evaluated = 0;
    for (var after = beforeMessages; after < stream.Position;)
    {
        var t = Stopwatch.StartNew();
        var reply = roomsClient.PushFeed(new Conduit.Protos.Rooms.PushFeedRequest { After = after, Limit = 200 });
        feedTime += t.Elapsed;
        worker.Process(reply);
        evaluated += reply.Events.Count;
        after = reply.Position;
    }
    var total = sw.Elapsed;
    var unread = pushStore.Counts("@user0:bench.local", Room).Notifications;
    Console.WriteLine($"push: {evaluated} events x {members} members (default rules): {total.TotalSeconds:F2} s, " +
        $"{total.TotalMilliseconds / evaluated:F2} ms per event ({feedTime.TotalMilliseconds / evaluated:F2} ms of it reading the feed, {worker.WriteTime.TotalMilliseconds / evaluated:F2} ms writing), " +
        $"{total.TotalMilliseconds * 1000 / evaluated / members:F2} µs per member; user0 now has {unread} unread");

    // Rule evaluation alone (no storage): every member's compiled defaults against one message.
    var evaluators = Enumerable.Range(0, members).Select(i => (User: $"@user{i}:bench.local",
        Rules: Conduit.Sync.PushRules.PushEvaluator.Compile(Conduit.Sync.PushRules.DefaultPushRules.For($"@user{i}:bench.local")))).ToList();
    var ctx = new Conduit.Sync.PushRules.PushRoomContext(members + 1, 0, new Dictionary<string, long> { ["room"] = 50 });
    var rounds = 200;
    var notified = 0;
    sw.Restart();
    for (var r = 0; r < rounds; r++)
    {
        var ev = new Conduit.Sync.PushRules.PushEvent(new JsonObject
        {
            ["type"] = "m.room.message", ["sender"] = "@someone:bench.local", ["room_id"] = Room, ["event_id"] = $"$e{r}",
            ["content"] = new JsonObject { ["msgtype"] = "m.text", ["body"] = $"hello {r}" },
        });
        foreach (var (user, rules) in evaluators)
            if (rules.Evaluate(ev, ctx, user, () => null) is { Notify: true }) notified++;
    }
    Console.WriteLine($"push rule evaluation alone: {sw.Elapsed.TotalMilliseconds / rounds:F3} ms per event for {members} members " +
        $"({sw.Elapsed.TotalMilliseconds * 1000 / rounds / members:F2} µs per member; {notified / rounds} notified per event)");
}
Directory.Delete(dir, recursive: true);
