using System.Text.Json.Nodes;
using Conduit.Common.Config;
using Conduit.Common.Crypto;
using Conduit.Common.Grpc;
using Conduit.Common.Storage;
using Conduit.Protos.Federation;
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
    public readonly RoomStore Rooms;
    public readonly RoomStream Stream;
    public readonly RoomWriter Writer;
    public readonly EventSigner Signer;
    public readonly EventSender Sender;
    public readonly ClientEvents Format;
    public readonly SyncBuilder Sync;
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
        Signer = new EventSigner(new Protos.Federation.Federation.FederationClient(invoker), NullLogger<EventSigner>.Instance);
        Federation.Signer = Signer;
        Sender = new EventSender(Rooms, States, Writer, Signer, Config, NullLogger<EventSender>.Instance);
        Format = new ClientEvents(Rooms);
        Visibility = new Visibility(Rooms, States);
        Sync = new SyncBuilder(Rooms, States, Stream, Format, Visibility);
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

    public async Task<StoredEvent> MemberAsync(string roomId, string sender, string target, string membership)
        => (await Sender.SendAsync(roomId, sender,
            [new NewEvent("m.room.member", target, new JsonObject { ["membership"] = membership })], null, CancellationToken.None)).Single();

    public async Task<StoredEvent> StateAsync(string roomId, string sender, string type, string stateKey, JsonObject content)
        => (await Sender.SendAsync(roomId, sender, [new NewEvent(type, stateKey, content)], null, CancellationToken.None)).Single();

    public int TimelineCount(string roomId) => Rooms.Timeline(roomId, 0, long.MaxValue, backwards: false).Count();
}
