using Conduit.Protos.Keys;
using Grpc.Core;
using Conduit.Common.Http;
using Conduit.Keys.E2ee;

namespace Conduit.Keys;

/// <summary>The keys service's gRPC surface (protos/keys.proto).</summary>
public sealed class KeysGrpcService(AccountStore accounts, AppserviceUsers appserviceUsers, E2eeStore e2ee, E2ee.FederatedKeys federated, AppserviceRegistry appservices) : Protos.Keys.Keys.KeysBase
{
    public override async Task WatchAppservices(WatchAppservicesRequest request, IServerStreamWriter<AppserviceSet> responseStream, ServerCallContext context)
    {
        await foreach (var set in appservices.Watch(context.CancellationToken))
        {
            var msg = new AppserviceSet();
            foreach (var a in set) msg.Appservices.Add(new RuntimeAppservice { Id = a.Id, Yaml = a.Yaml, RegisteredBy = a.RegisteredBy, RegisteredTs = a.RegisteredTs });
            await responseStream.WriteAsync(msg);
        }
    }

    public override Task<ProfileMediaReply> ProfileMedia(ProfileMediaRequest request, ServerCallContext context)
    {
        var reply = new ProfileMediaReply();
        foreach (var (_, user) in accounts.AllUsers())
            if (user["avatar_url"] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue(out string? mxc) && mxc.StartsWith("mxc://", StringComparison.Ordinal))
                reply.MxcUris.Add(mxc);
        return Task.FromResult(reply);
    }

    public override Task<KeysFederateReply> Federate(KeysFederateRequest request, ServerCallContext context)
    {
        var body = request.Body.Length > 0 ? Conduit.Common.Http.RequestJson.ParseObject(request.Body, "Request body") : [];
        return Task.FromResult(new KeysFederateReply { Body = federated.Handle(request.Origin, request.Operation, request.UserId, body).ToJsonString() });
    }

    public override Task<SyncKeysReply> SyncKeys(SyncKeysRequest request, ServerCallContext context)
    {
        var r = e2ee.Sync(request.UserId, request.DeviceId, request.Since, request.Incremental, !request.SkipToDevice,
            request.ToDeviceLimit > 0 ? request.ToDeviceLimit : E2eeStore.ToDevicePerSync);
        var reply = new SyncKeysReply { Position = r.Position, ToDevice = { r.ToDevice }, UnusedFallbackKeyTypes = { r.UnusedFallbackTypes }, ChangedUserIds = { r.Changed } };
        foreach (var (alg, n) in r.OneTimeKeyCounts) reply.OneTimeKeyCounts[alg] = n;
        return Task.FromResult(reply);
    }

    public override async Task WatchKeys(WatchKeysRequest request, IServerStreamWriter<Protos.Keys.KeysAdvance> responseStream, ServerCallContext context)
    {
        await foreach (var a in e2ee.Stream.Watch(context.CancellationToken))
        {
            var msg = new Protos.Keys.KeysAdvance { Position = a.Position, WakeUserIds = { a.Wake }, ChangedUserIds = { a.Changed }, CountedUserIds = { a.Counted ?? [] } };
            foreach (var (user, device) in a.Removed ?? []) msg.RemovedDevices.Add(new DeviceRef { UserId = user, DeviceId = device });
            await responseStream.WriteAsync(msg);
        }
    }

    public override Task<AppserviceKeysReply> AppserviceKeys(AppserviceKeysRequest request, ServerCallContext context)
    {
        var reply = new AppserviceKeysReply();
        foreach (var user in request.UserIds.Distinct())
            foreach (var d in accounts.Devices(user))
            {
                var since = request.Cursors.TryGetValue(user + "|" + d.DeviceId, out var c) ? c : 0;
                var r = e2ee.Sync(user, d.DeviceId, since, incremental: false, toDevice: !request.SkipToDevice);
                var item = new AppserviceDeviceKeys { UserId = user, DeviceId = d.DeviceId, Position = r.Position, ToDevice = { r.ToDevice }, UnusedFallbackKeyTypes = { r.UnusedFallbackTypes } };
                foreach (var (alg, n) in r.OneTimeKeyCounts) item.OneTimeKeyCounts[alg] = n;
                reply.Devices.Add(item);
            }
        return Task.FromResult(reply);
    }

    public override Task<DevicesExistReply> DevicesExist(DevicesExistRequest request, ServerCallContext context)
    {
        var reply = new DevicesExistReply();
        foreach (var d in request.Devices) reply.Exists.Add(accounts.DeviceExists(d.UserId, d.DeviceId));
        return Task.FromResult(reply);
    }

    public override Task<ResolveTokenReply> ResolveToken(ResolveTokenRequest request, ServerCallContext context)
    {
        if (accounts.AppserviceOf(request.AccessToken) is { } appservice)
        {
            var (identity, forbidden) = accounts.ResolveAppservice(appservice, request.UserId, request.DeviceId);
            return Task.FromResult(identity is null
                ? new ResolveTokenReply { Valid = false, Forbidden = forbidden, AppserviceId = appservice.Id }
                : new ResolveTokenReply { Valid = true, UserId = identity.UserId, DeviceId = identity.DeviceId, IsAdmin = identity.IsAdmin, AppserviceId = appservice.Id });
        }
        var r = accounts.Authenticate(request.AccessToken);
        return Task.FromResult(r is null
            ? new ResolveTokenReply { Valid = false }
            : new ResolveTokenReply { Valid = !r.Expired, Expired = r.Expired, UserId = r.UserId, DeviceId = r.DeviceId, IsGuest = r.IsGuest, ExpiresTs = r.ExpiresTs, IsAdmin = r.IsAdmin });
    }

    public override async Task WatchRevocations(WatchRevocationsRequest request, IServerStreamWriter<Revocation> responseStream, ServerCallContext context)
    {
        await foreach (var token in accounts.WatchRevocations(context.CancellationToken))
            await responseStream.WriteAsync(new Revocation { AccessToken = token });
    }

    public override async Task<ProfileReply> GetProfile(GetProfileRequest request, ServerCallContext context)
    {
        var u = await appserviceUsers.GetUserAsync(request.UserId, context.CancellationToken) ?? throw Err.NotFound("No such user");
        var reply = new ProfileReply
        {
            UserId = request.UserId, Deactivated = u["deactivated"]?.GetValue<bool>() == true, IsGuest = u["is_guest"]?.GetValue<bool>() == true,
        };
        if (u["displayname"]?.GetValue<string>() is { } dn) reply.Displayname = dn;
        if (u["avatar_url"]?.GetValue<string>() is { } av) reply.AvatarUrl = av;
        return reply;
    }
}
