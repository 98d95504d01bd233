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
var members = 10_000;
var messages = 1_000;
var backend = "rocksdb";
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

var dir = Directory.CreateTempSubdirectory("conduit-bench-").FullName;
var config = new GlobalConfig { ServerName = "bench.local" };
var families = RoomsFamilies.All.Concat(FederationFamilies.All).ToList();
using var store = KvStore.Open(backend, backend == "sqlite" ? Path.Combine(dir, "bench.sqlite") : dir, families, storeOptions);
using var keys = new ServerKeys(store, config);
var fed = new Conduit.Protos.Federation.Federation.FederationClient(
    InProcessCallInvoker.Create(null, b => Conduit.Protos.Federation.Federation.BindService(b, new FederationGrpcService(keys))).WithMatrixErrors());
var rooms = new RoomStore(store);
var states = new StateStore(store);
using var writer = new RoomWriter(rooms, states, new RoomStream(rooms), config, Microsoft.Extensions.Logging.Abstractions.NullLogger<RoomWriter>.Instance);
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
Directory.Delete(dir, recursive: true);
