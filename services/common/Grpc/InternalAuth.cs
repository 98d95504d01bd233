using System.Security.Cryptography;
using System.Text;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Conduit.Common.Grpc;

/// <summary>The shared secret that service-to-service calls carry in a request header.</summary>
public static class InternalAuth
{
    public const string HeaderName = "x-conduit-internal";

    /// <summary>Adds the <see cref="HeaderName"/> header with <paramref name="secret"/> to every call made through the result.</summary>
    public static CallInvoker WithInternalSecret(this CallInvoker invoker, string secret) =>
        invoker.Intercept(new InternalSecretClientInterceptor(secret));

    /// <summary>Whether the call's headers carry exactly this secret (constant-time comparison).</summary>
    public static bool HasSecret(Metadata headers, string secret)
    {
        var value = headers.GetValue(HeaderName);
        return value is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(value), Encoding.UTF8.GetBytes(secret));
    }
}

/// <summary>Client side of <see cref="InternalAuth"/>: adds the secret header, leaving the caller's Metadata untouched.</summary>
public sealed class InternalSecretClientInterceptor(string secret) : Interceptor
{
    private ClientInterceptorContext<TRequest, TResponse> WithHeader<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context)
        where TRequest : class where TResponse : class
    {
        var headers = new Metadata();
        if (context.Options.Headers is { } existing)
        {
            foreach (var entry in existing)
            {
                if (!string.Equals(entry.Key, InternalAuth.HeaderName, StringComparison.OrdinalIgnoreCase)) headers.Add(entry);
            }
        }
        headers.Add(InternalAuth.HeaderName, secret);
        return new ClientInterceptorContext<TRequest, TResponse>(context.Method, context.Host, context.Options.WithHeaders(headers));
    }

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, BlockingUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithHeader(context));

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithHeader(context));

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithHeader(context));

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context, AsyncClientStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(WithHeader(context));

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context, AsyncDuplexStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(WithHeader(context));
}

/// <summary>
/// Server side of <see cref="InternalAuth"/>: rejects calls without the secret with
/// <see cref="StatusCode.Unauthenticated"/>. Register with <c>AddGrpc(o =&gt; o.Interceptors.Add&lt;InternalSecretServerInterceptor&gt;(secret))</c>.
/// </summary>
public sealed class InternalSecretServerInterceptor(string secret) : Interceptor
{
    private void Check(ServerCallContext context)
    {
        if (!InternalAuth.HasSecret(context.RequestHeaders, secret))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "Missing or wrong internal secret."));
        }
    }

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(request, responseStream, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Check(context);
        return continuation(requestStream, responseStream, context);
    }
}
