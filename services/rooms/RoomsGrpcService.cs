using System.Text.Json.Nodes;
using Conduit.Common;
using Conduit.Common.Events;
using Conduit.Common.Http;
using Conduit.Protos.Rooms;
using Grpc.Core;

namespace Conduit.Rooms;

/// <summary>The rooms service's gRPC surface (protos/rooms.proto).</summary>
public sealed class RoomsGrpcService(RoomStore rooms, RoomStream stream, SyncBuilder sync, EventSender sender) : Protos.Rooms.Rooms.RoomsBase
{
    public override async Task WatchStream(WatchStreamRequest request, IServerStreamWriter<Protos.Rooms.StreamAdvance> responseStream, ServerCallContext context)
    {
        await foreach (var a in stream.Subscribe(context.CancellationToken))
        {
            var msg = new Protos.Rooms.StreamAdvance { Position = a.Position };
            msg.UserIds.AddRange(a.UserIds);
            await responseStream.WriteAsync(msg);
        }
    }

    public override Task<SyncRoomsReply> SyncRooms(SyncRoomsRequest request, ServerCallContext context)
    {
        Filter? filter = null;
        if (request.FilterJson.Length > 0)
            filter = Filter.Parse(JsonLimits.ParseInternal(request.FilterJson) as JsonObject ?? throw Err.BadJson("filter must be an object"));
        var r = sync.Build(request.UserId, request.DeviceId.Length > 0 ? request.DeviceId : null, request.Since, request.FullState, filter);
        var reply = new SyncRoomsReply { RoomsJson = r.Rooms.ToJsonString(), Position = r.Position };
        reply.JoinedRoomIds.AddRange(r.JoinedRoomIds);
        return Task.FromResult(reply);
    }

    public override Task<GetMembershipReply> GetMembership(GetMembershipRequest request, ServerCallContext context)
        => Task.FromResult(new GetMembershipReply
        {
            Membership = rooms.MembershipOf(request.UserId, request.RoomId)?.State ?? "",
            RoomExists = rooms.Info(request.RoomId) is not null,
        });

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
        var n = 0;
        foreach (var (roomId, m) in rooms.RoomsOf(request.UserId).ToList())
        {
            if (m.State is not ("join" or "invite" or "knock")) continue;
            await sender.SendAsync(roomId, request.UserId, [new NewEvent("m.room.member", request.UserId, new JsonObject { ["membership"] = "leave" })], null, context.CancellationToken);
            n++;
        }
        return new LeaveAllRoomsReply { RoomsLeft = n };
    }
}
