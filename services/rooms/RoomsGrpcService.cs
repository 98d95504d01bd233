using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;
using Conduit.Protos.Rooms;
using Grpc.Core;

namespace Conduit.Rooms;

/// <summary>The rooms service's gRPC surface (protos/rooms.proto).</summary>
public sealed class RoomsGrpcService(RoomStore rooms, RoomStream stream, SyncBuilder sync, EventSender sender, DeviceLists deviceLists, PushFeed pushFeed, ClientEvents clientEvents,
    FederationServer federationServer, FederationFeed federationFeed, Conduit.Common.Config.GlobalConfig config, Admin.AdminRoom adminRoom,
    SlidingBuilder sliding) : Protos.Rooms.Rooms.RoomsBase
{
    public override async Task<AdminGrantedReply> AdminGranted(AdminGrantedRequest request, ServerCallContext context)
    {
        await adminRoom.InviteAsync(request.UserId, context.CancellationToken);
        return new AdminGrantedReply();
    }

    public override Task<SlidingRoomsReply> SlidingRooms(SlidingRoomsRequest request, ServerCallContext context)
        => Task.FromResult(sliding.Build(request));

    public override Task<FederateReply> Federate(FederateRequest request, ServerCallContext context)
        => federationServer.HandleAsync(request, context.CancellationToken);

    public override Task<FederationFeedReply> FederationFeed(FederationFeedRequest request, ServerCallContext context)
        => Task.FromResult(federationFeed.Read(request.After, request.Limit));

    public override Task<PushFeedReply> PushFeed(PushFeedRequest request, ServerCallContext context)
        => Task.FromResult(pushFeed.Read(request.After, request.Limit));

    public override Task<AppserviceFeedReply> AppserviceFeed(PushFeedRequest request, ServerCallContext context)
        => Task.FromResult(pushFeed.ReadForAppservices(request.After, request.Limit, clientEvents));

    public override Task<ClientEventsReply> ClientEvents(ClientEventsRequest request, ServerCallContext context)
    {
        var reply = new ClientEventsReply();
        foreach (var id in request.EventIds)
            reply.Events.Add(rooms.Event(id) is { InTimeline: true, Rejected: null } e
                ? clientEvents.Format(e, forUser: request.UserId).ToJsonString() : "");
        return Task.FromResult(reply);
    }

    public override Task<MemberDisplayNamesReply> MemberDisplayNames(MemberDisplayNamesRequest request, ServerCallContext context)
        => Task.FromResult(new MemberDisplayNamesReply { DisplayNames = { pushFeed.DisplayNames(request.RoomId, request.UserIds) } });

    public override async Task WatchStream(WatchStreamRequest request, IServerStreamWriter<Protos.Rooms.StreamAdvance> responseStream, ServerCallContext context)
    {
        await foreach (var a in stream.Subscribe(context.CancellationToken))
        {
            var msg = new Protos.Rooms.StreamAdvance { Position = a.Position };
            msg.UserIds.AddRange(a.UserIds);
            await responseStream.WriteAsync(msg);
        }
    }

    public override async Task SyncRooms(SyncRoomsRequest request, IServerStreamWriter<SyncRoomsPart> responseStream, ServerCallContext context)
    {
        var filter = request.Filter is { } f ? FilterOf(f) : null;
        // Each part is sent before the next is built: the builder runs at the pace of the reader (bounded in
        // process by the invoker's channel, over HTTP/2 by flow control), and stops when the call is cancelled.
        var deviceId = request.DeviceId.Length > 0 ? request.DeviceId : null;
        var ignored = request.IgnoredUsers.Count > 0 ? request.IgnoredUsers.ToHashSet() : null;
        foreach (var part in sync.Build(request.UserId, deviceId, request.Since, request.FullState, filter, request.WantJoinedRoomIds, ignored))
            await responseStream.WriteAsync(part, context.CancellationToken);
    }

    /// <summary>The filter sync parsed, back in the type the builder applies (its room part is all that travels).</summary>
    internal static Filter FilterOf(SyncRoomFilter f) => new()
    {
        Room = new RoomFilter
        {
            Rooms = ListOf(f.Rooms),
            NotRooms = ListOf(f.NotRooms),
            IncludeLeave = f.IncludeLeave,
            Timeline = EventFilterOf(f.Timeline),
            State = EventFilterOf(f.State),
        },
    };

    static RoomEventFilter EventFilterOf(SyncEventFilter? f) => f is null ? new RoomEventFilter() : new RoomEventFilter
    {
        Limit = f.HasLimit ? f.Limit : null,
        Types = ListOf(f.Types_),
        NotTypes = ListOf(f.NotTypes),
        Senders = ListOf(f.Senders),
        NotSenders = ListOf(f.NotSenders),
        Rooms = ListOf(f.Rooms),
        NotRooms = ListOf(f.NotRooms),
        ContainsUrl = f.HasContainsUrl ? f.ContainsUrl : null,
        LazyLoadMembers = f.LazyLoadMembers,
        IncludeRedundantMembers = f.IncludeRedundantMembers,
        UnreadThreadNotifications = f.UnreadThreadNotifications,
    };

    static string[]? ListOf(StringList? l) => l is null ? null : [.. l.Values];

    public override Task<GetMembershipReply> GetMembership(GetMembershipRequest request, ServerCallContext context)
        => Task.FromResult(new GetMembershipReply
        {
            Membership = rooms.MembershipOf(request.UserId, request.RoomId)?.State ?? "",
            RoomExists = rooms.Info(request.RoomId) is not null,
        });

    public override Task<RoomEphemeralReply> RoomEphemeral(RoomEphemeralRequest request, ServerCallContext context)
    {
        var reply = new RoomEphemeralReply
        {
            Membership = rooms.MembershipOf(request.UserId, request.RoomId)?.State ?? "",
            RoomExists = rooms.Info(request.RoomId) is not null,
        };
        if (!reply.RoomExists) return Task.FromResult(reply);
        if (request.OriginServer.Length > 0) reply.ServerDenied = !ServerAcl.Allows(rooms.StateContent(request.RoomId, "m.room.server_acl"), request.OriginServer);
        if (request.EventId.Length > 0 && rooms.Event(request.EventId) is { InTimeline: true } e && e.Rejected is null && e.RoomId == request.RoomId)
            (reply.EventFound, reply.EventPosition) = (true, e.Pos);
        reply.JoinedUserIds.AddRange(rooms.JoinedMembers(request.RoomId));
        return Task.FromResult(reply);
    }

    public override async Task<UpdateMemberProfileReply> UpdateMemberProfile(UpdateMemberProfileRequest request, ServerCallContext context)
    {
        var n = 0;
        foreach (var (roomId, m) in rooms.RoomsOf(request.UserId).ToList())
        {
            if (m.State != "join") continue;
            var content = new JsonObject { ["membership"] = "join" };
            if (request.HasDisplayname) content["displayname"] = request.Displayname;
            if (request.HasAvatarUrl) content["avatar_url"] = request.AvatarUrl;
            var current = rooms.StateContent(roomId, "m.room.member", request.UserId);
            if (current is not null && JsonNode.DeepEquals(current, content)) continue;
            await sender.SendAsync(roomId, request.UserId, [new NewEvent("m.room.member", request.UserId, content)], null, context.CancellationToken);
            n++;
        }
        return new UpdateMemberProfileReply { RoomsUpdated = n };
    }

    public override async Task<LeaveAllRoomsReply> LeaveAllRooms(LeaveAllRoomsRequest request, ServerCallContext context)
    {
        // The admin bot never leaves its room (keys refuses to deactivate it; this is the second lock).
        if (request.UserId == adminRoom.BotUserId) throw Conduit.Common.Http.Err.Forbidden("The server's admin bot keeps its rooms");
        var n = 0;
        foreach (var (roomId, m) in rooms.RoomsOf(request.UserId).ToList())
        {
            if (m.State is not ("join" or "invite" or "knock")) continue;
            await sender.SendAsync(roomId, request.UserId, [new NewEvent("m.room.member", request.UserId, new JsonObject { ["membership"] = "leave" })], null, context.CancellationToken);
            n++;
        }
        return new LeaveAllRoomsReply { RoomsLeft = n };
    }

    public override Task<DeviceListDeltaReply> DeviceListDelta(DeviceListDeltaRequest request, ServerCallContext context)
    {
        var (changed, left) = deviceLists.Delta(request.UserId, request.From, request.To, request.CandidateUserIds);
        return Task.FromResult(new DeviceListDeltaReply { Changed = { changed }, Left = { left } });
    }

    public override Task<RoomMediaReply> RoomMedia(RoomMediaRequest request, ServerCallContext context)
    {
        var uris = new HashSet<string>(StringComparer.Ordinal);
        foreach (var roomId in rooms.AllRoomIds())
            foreach (var ((type, _), eventId) in rooms.CurrentState(roomId))
            {
                var key = type switch { "m.room.avatar" => "url", "m.room.member" => "avatar_url", _ => null };
                if (key is not null && Rules.ContentField.String(rooms.Event(eventId)?.Content, key) is { } mxc && mxc.StartsWith("mxc://", StringComparison.Ordinal))
                    uris.Add(mxc);
            }
        return Task.FromResult(new RoomMediaReply { MxcUris = { uris } });
    }

    public override Task<SharedUsersReply> SharingWithLocal(SharedUsersRequest request, ServerCallContext context)
        => Task.FromResult(new SharedUsersReply { UserIds = { request.UserIds.Distinct().Where(u => deviceLists.SharesWithServer(u, config.ServerName)) } });

    public override Task<SharedUsersReply> SharedUsers(SharedUsersRequest request, ServerCallContext context)
    {
        var all = new HashSet<string>(StringComparer.Ordinal);
        foreach (var u in request.UserIds) all.UnionWith(deviceLists.SharedWith(u));
        return Task.FromResult(new SharedUsersReply { UserIds = { all } });
    }
}
