using System.Text;
using System.Text.Json.Nodes;
using Conduit.Common.Http;
using Conduit.Protos.Federation;
using Google.Protobuf;
using Grpc.Core;

namespace Conduit.Federation;

/// <summary>The federation service's gRPC surface (protos/federation.proto).</summary>
public sealed class FederationGrpcService(ServerKeys keys, RemoteKeyStore remoteKeys, FederationRequests requests, Outbound.FederationQueue queue,
    Conduit.Common.Config.GlobalConfig config, XMatrixVerifier verifier) : Protos.Federation.Federation.FederationBase
{
    const int ChunkBytes = 64 * 1024;
    static readonly TimeSpan DownloadTimeout = TimeSpan.FromMinutes(5);

    public override async Task<VerifyRequestReply> VerifyRequest(VerifyRequestRequest request, ServerCallContext context)
        => new() { Origin = await verifier.VerifyAsync(request.Method, request.Uri, request.Authorization.Length > 0 ? request.Authorization : null, request.Body.Memory, context.CancellationToken) };

    /// <summary>
    /// Streams another server's file: the status and headers first, then chunks. A multipart/mixed answer (the
    /// federation media endpoints) is unwrapped: its first part is metadata, its second the file; a second part that
    /// only redirects (Location) is not followed (a URL of the other server's choosing), and answers 404.
    /// </summary>
    public override async Task Download(OutboundRequest request, IServerStreamWriter<DownloadPart> responseStream, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(request.TimeoutMs > 0 ? TimeSpan.FromMilliseconds(request.TimeoutMs) : DownloadTimeout);
        var (response, failure) = await requests.OpenAsync(request.Destination, "GET", request.Path, null, cts.Token, ct);
        if (response is null)
        {
            await responseStream.WriteAsync(new DownloadPart { Status = failure!.Status, Error = failure.Error ?? "" }, ct);
            return;
        }
        using (response)
        {
            var status = (int)response.StatusCode;
            if (status != 200)
            {
                await responseStream.WriteAsync(new DownloadPart { Status = status, Error = "answered " + status }, ct);
                return;
            }
            var body = await response.Content.ReadAsStreamAsync(cts.Token);
            var type = response.Content.Headers.ContentType;
            Stream file = body;
            string contentType = type?.ToString() ?? "application/octet-stream", disposition = response.Content.Headers.ContentDisposition?.ToString() ?? "";
            if (type?.MediaType?.Equals("multipart/mixed", StringComparison.OrdinalIgnoreCase) == true)
            {
                var boundary = type.Parameters.FirstOrDefault(p => p.Name.Equals("boundary", StringComparison.OrdinalIgnoreCase))?.Value?.Trim('"');
                if (string.IsNullOrEmpty(boundary))
                {
                    await responseStream.WriteAsync(new DownloadPart { Status = 502, Error = "multipart answer without a boundary" }, ct);
                    return;
                }
                var reader = new Microsoft.AspNetCore.WebUtilities.MultipartReader(boundary, body);
                var metadata = await reader.ReadNextSectionAsync(cts.Token);
                var section = metadata is null ? null : await reader.ReadNextSectionAsync(cts.Token);
                if (section is null || section.Headers?.ContainsKey("Location") == true)
                {
                    await responseStream.WriteAsync(new DownloadPart { Status = 404, Error = section is null ? "no file part" : "a redirect, not followed" }, ct);
                    return;
                }
                file = section.Body;
                contentType = section.ContentType ?? "application/octet-stream";
                disposition = section.ContentDisposition ?? "";
            }
            await responseStream.WriteAsync(new DownloadPart { Status = 200, ContentType = contentType, ContentDisposition = disposition }, ct);
            var buffer = new byte[ChunkBytes];
            int n;
            while ((n = await file.ReadAsync(buffer, cts.Token)) > 0)
                await responseStream.WriteAsync(new DownloadPart { Data = ByteString.CopyFrom(buffer, 0, n) }, ct);
        }
    }

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
