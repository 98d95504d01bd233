using Conduit.Protos.Federation;
using Grpc.Core;

namespace Conduit.Federation;

/// <summary>The federation service's gRPC surface (protos/federation.proto).</summary>
public sealed class FederationGrpcService(ServerKeys keys) : Protos.Federation.Federation.FederationBase
{
    public override Task<SignReply> Sign(SignRequest request, ServerCallContext context)
        => Task.FromResult(new SignReply
        {
            ServerName = keys.ServerName,
            KeyId = keys.Key.KeyId,
            Signature = keys.Key.SignBase64(request.CanonicalJson.Span),
        });
}
