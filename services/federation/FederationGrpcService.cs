using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Http;
using Conduit.Protos.Federation;
using Google.Protobuf;
using Grpc.Core;

namespace Conduit.Federation;

/// <summary>The federation service's gRPC surface (protos/federation.proto).</summary>
public sealed class FederationGrpcService(ServerKeys keys, RemoteKeyStore remoteKeys, FederationRequests requests, Outbound.FederationQueue queue,
    Conduit.Common.Config.GlobalConfig config) : Protos.Federation.Federation.FederationBase
{
    public override Task<QueueEduReply> QueueEdu(QueueEduRequest request, ServerCallContext context)
    {
        if (config.AllowFederation)
            queue.EnqueueEdu(request.Destinations.Where(d => d != config.ServerName), RequestJson.ParseObject(request.Edu, "EDU"));
        return Task.FromResult(new QueueEduReply());
    }

    public override async Task WatchSigningKey(WatchSigningKeyRequest request, IServerStreamWriter<SigningKeyUpdate> responseStream, ServerCallContext context)
    {
        await foreach (var key in keys.Watch(context.CancellationToken))
            await responseStream.WriteAsync(new SigningKeyUpdate
            {
                ServerName = keys.ServerName,
                Version = key.Version,
                Seed = ByteString.CopyFrom(key.ExportSeed()),
            });
    }

    public override async Task<OutboundReply> SendRequest(OutboundRequest request, ServerCallContext context)
    {
        JsonNode? body = null;
        if (request.Body.Length > 0) body = RequestJson.Parse(Encoding.UTF8.GetBytes(request.Body));
        var reply = await requests.SendAsync(request.Destination, request.Method, request.Path, body,
            request.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(request.TimeoutMs) : null, context.CancellationToken);
        return new OutboundReply { Status = reply.Status, Body = reply.Body, Error = reply.Error ?? "" };
    }

    /// <summary>Looks up each key once (the fetches of different servers run together); unknown keys are left out.</summary>
    public override async Task<ResolveKeysReply> ResolveKeys(ResolveKeysRequest request, ServerCallContext context)
    {
        var wanted = request.Keys.GroupBy(k => (k.ServerName, k.KeyId)).Select(g => (g.Key.ServerName, g.Key.KeyId, ValidAt: g.Max(k => k.ValidAt))).ToList();
        var found = await Task.WhenAll(wanted.GroupBy(w => w.ServerName).Select(async byServer =>
        {
            var list = new List<RemoteKey>();
            // One server's keys one after the other: the first fetch caches the response the others read.
            foreach (var (server, keyId, validAt) in byServer)
                if (await remoteKeys.GetKeyAsync(server, keyId, validAt, context.CancellationToken) is { } k) list.Add(k);
            return list;
        }));
        var reply = new ResolveKeysReply();
        foreach (var k in found.SelectMany(l => l))
            reply.Keys.Add(new VerifyKey
            {
                ServerName = k.ServerName, KeyId = k.KeyId, PublicKey = ByteString.CopyFrom(k.PublicKey),
                ValidUntilTs = k.ValidUntilTs, ExpiredTs = k.ExpiredTs ?? 0,
            });
        return reply;
    }
}
