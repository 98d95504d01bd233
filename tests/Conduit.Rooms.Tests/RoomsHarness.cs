using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Events;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Grpc;
using Conduit.Common.Storage;
using Conduit.Protos.Federation;
using Conduit.Protos.Rooms;
using Grpc.Core;
using Microsoft.Extensions.Logging.Abstractions;

namespace Conduit.Rooms.Tests;

/// <summary>
/// Hands out a signing key made for the test, as the federation service does (WatchSigningKey). <see cref="Calls"/>
/// counts the signatures the rooms service made with it.
/// </summary>
public sealed class FakeFederation(SigningKey key, string serverName) : Protos.Federation.Federation.FederationBase
{
    public EventSigner? Signer;

    public long Calls => Signer?.Signed ?? 0;

    /// <summary>Answers the rooms service's requests to other servers (SendRequest); unset, every server is unreachable.</summary>
    public Func<OutboundRequest, OutboundReply>? Remote;
    public readonly List<OutboundRequest> Sent = [];

    public override Task<OutboundReply> SendRequest(OutboundRequest request, ServerCallContext context)
    {
        lock (Sent) Sent.Add(request);
        return Task.FromResult(Remote?.Invoke(request) ?? new OutboundReply { Error = "unreachable" });
    }

    public override async Task WatchSigningKey(WatchSigningKeyRequest request, IServerStreamWriter<SigningKeyUpdate> responseStream, ServerCallContext context)
    {
        await responseStream.WriteAsync(new SigningKeyUpdate { ServerName = serverName, Version = key.Version, Seed = Google.Protobuf.ByteString.CopyFrom(key.ExportSeed()) });
        try { await Task.Delay(Timeout.Infinite, context.CancellationToken); } catch (OperationCanceledException) { }
    }
}

/// <summary>The rooms service's classes over an in-memory store, with signing through in-process gRPC.</summary>
public sealed class RoomsHarness : IDisposable
{
    public const string Server = "test.local";
    public const string Alice = "@alice:test.local";
    public const string Bob = "@bob:test.local";
    public const string Carol = "@carol:test.local";

    public readonly SigningKey Key = SigningKey.Generate("t");
    public readonly IKeyValueStore Kv = KvStore.Open("memory", "", RoomsFamilies.All);
    public readonly GlobalConfig Config = new() { ServerName = Server };
    public readonly FakeFederation Federation;
    public readonly Protos.Federation.Federation.FederationClient FederationClient;
    public readonly RoomStore Rooms;
    public readonly RoomStream Stream;
    public readonly RoomWriter Writer;
    public readonly EventSigner Signer;
    public readonly EventSender Sender;
    public readonly ClientEvents Format;
    public readonly SyncBuilder Builder;
    public readonly SyncHarness Sync;
    public readonly Visibility Visibility;
    public readonly StateStore States;

    public RoomsHarness()
    {
        Federation = new FakeFederation(Key, Server);
        var invoker = InProcessCallInvoker.Create(null, b => Protos.Federation.Federation.BindService(b, Federation)).WithMatrixErrors();
        Rooms = new RoomStore(Kv);
        Stream = new RoomStream(Rooms);
        States = new StateStore(Kv);
        Writer = new RoomWriter(Rooms, States, Stream, Config, NullLogger<RoomWriter>.Instance);
        FederationClient = new Protos.Federation.Federation.FederationClient(invoker);
        Signer = new EventSigner(FederationClient, NullLogger<EventSigner>.Instance);
        Federation.Signer = Signer;
        Sender = new EventSender(Rooms, States, Writer, Signer, Config, NullLogger<EventSender>.Instance);
        Visibility = new Visibility(Rooms, States);
        Format = new ClientEvents(Rooms, new Relations(Rooms), Visibility);
        Builder = new SyncBuilder(Rooms, States, Format, Visibility, Stream);
        Sync = new SyncHarness(Builder);
    }

    public void Dispose()
    {
        Signer.Dispose();
        Writer.Dispose();
        Kv.Dispose();
        Key.Dispose();
    }

    /// <summary>The four events a client's createRoom starts with: create, creator's join, power levels, join rules.</summary>
    public async Task<IReadOnlyList<StoredEvent>> CreateRoomAsync(string roomId, string joinRule = "public", string creator = Alice)
        => await Sender.SendAsync(roomId, creator,
        [
            new NewEvent("m.room.create", "", new JsonObject { ["room_version"] = "11" }),
            new NewEvent("m.room.member", creator, new JsonObject { ["membership"] = "join" }),
            new NewEvent("m.room.power_levels", "", new JsonObject
            {
                ["users"] = new JsonObject { [creator] = 100 },
                ["users_default"] = 0,
                ["events_default"] = 0,
                ["state_default"] = 50,
                ["ban"] = 50,
                ["kick"] = 50,
                ["redact"] = 50,
                ["invite"] = 0,
            }),
            new NewEvent("m.room.join_rules", "", new JsonObject { ["join_rule"] = joinRule }),
        ], null, CancellationToken.None);

    public async Task<StoredEvent> MessageAsync(string roomId, string sender, string body, TxnRef? txn = null)
        => (await Sender.SendAsync(roomId, sender,
            [new NewEvent("m.room.message", null, new JsonObject { ["msgtype"] = "m.text", ["body"] = body })], txn, CancellationToken.None)).Single();

    /// <summary><paramref name="count"/> messages from Alice, each sent at least 5 ms after the one before so every one has a
    /// timestamp of its own; oldest first, with their origin_server_ts.</summary>
    public async Task<List<(StoredEvent Event, long Ts)>> SpacedMessagesAsync(string roomId, int count)
    {
        var list = new List<(StoredEvent, long)>();
        for (var i = 0; i < count; i++)
        {
            await Task.Delay(5);
            var e = await MessageAsync(roomId, Alice, $"m{i}");
            list.Add((e, e.Pdu["origin_server_ts"]!.GetValue<long>()));
        }
        return list;
    }

    public async Task<StoredEvent> MemberAsync(string roomId, string sender, string target, string membership)
        => (await Sender.SendAsync(roomId, sender,
            [new NewEvent("m.room.member", target, new JsonObject { ["membership"] = membership })], null, CancellationToken.None)).Single();

    public async Task<StoredEvent> StateAsync(string roomId, string sender, string type, string stateKey, JsonObject content)
        => (await Sender.SendAsync(roomId, sender, [new NewEvent(type, stateKey, content)], null, CancellationToken.None)).Single();

    public int TimelineCount(string roomId) => Rooms.Timeline(roomId, 0, long.MaxValue, backwards: false).Count();
}

/// <summary>
/// Runs <see cref="SyncBuilder"/> and puts its SyncRooms stream back together as the "rooms" object a client sees
/// (without the join sections' account_data, which the sync service adds), checking the stream's contract
/// (protos/rooms.proto) on the way: the head first and alone, sections in order, each room's pieces in a row
/// ending with one marked last, and each room's members a valid JSON object once put between braces.
/// </summary>
public sealed class SyncHarness(SyncBuilder builder)
{
    public sealed record Result(JsonObject Rooms, long Position, IReadOnlyList<string> JoinedRoomIds, IReadOnlyList<SyncRoomsPart> Parts);

    static readonly string[] SectionNames = ["join", "invite", "leave", "knock"];

    public Result Build(string userId, string? deviceId, long since, bool fullState, Filter? filter)
        => Assemble(builder.Build(userId, deviceId, since, fullState, filter).ToList());

    public static Result Assemble(IReadOnlyList<SyncRoomsPart> parts)
    {
        Assert.NotEmpty(parts);
        var head = parts[0].Head;
        Assert.NotNull(head);
        Assert.Empty(parts[0].Rooms);
        var rooms = new JsonObject { ["join"] = new JsonObject(), ["invite"] = new JsonObject(), ["leave"] = new JsonObject() };
        var section = -1;
        string? open = null;
        var members = new StringBuilder();
        foreach (var part in parts.Skip(1))
        {
            Assert.Null(part.Head);
            Assert.NotEmpty(part.Rooms);
            foreach (var piece in part.Rooms)
            {
                if (open is null)
                {
                    Assert.True((int)piece.Section >= section, $"{piece.RoomId} comes after section {section}");
                    section = (int)piece.Section;
                    open = piece.RoomId;
                    members.Clear();
                }
                Assert.Equal(open, piece.RoomId);
                Assert.Equal(section, (int)piece.Section);
                members.Append(piece.Json.ToStringUtf8());
                if (!piece.Last) continue;
                var room = Conduit.Common.JsonLimits.ParseInternal("{" + members + "}")!.AsObject();
                var name = SectionNames[section];
                if (rooms[name] is not JsonObject target) rooms[name] = target = new JsonObject();
                Assert.False(target.ContainsKey(open), $"{open} twice");
                target[open] = room;
                open = null;
            }
        }
        Assert.Null(open);
        return new Result(rooms, head.Position, [.. head.JoinedRoomIds], parts);
    }
}
