using Conduit.Protos.Federation;
using Google.Protobuf;
using Grpc.Core;

namespace Conduit.Federation;

/// <summary>The federation service's gRPC surface (protos/federation.proto).</summary>
public sealed class FederationGrpcService(ServerKeys keys) : Protos.Federation.Federation.FederationBase
{
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
}
