using Grpc.Core;

namespace Conduit.Common.Grpc;

/// <summary>
/// A call invoker created on first use. All-in-one services call each other in process, and their
/// implementations depend on each other's clients; deferring the in-process binding to the first call breaks
/// the construction cycle without a service locator in the services themselves.
/// </summary>
public sealed class LazyCallInvoker(Func<CallInvoker> create) : CallInvoker
{
    readonly Lazy<CallInvoker> _inner = new(create, LazyThreadSafetyMode.ExecutionAndPublication);

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
        => _inner.Value.BlockingUnaryCall(method, host, options, request);

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
        => _inner.Value.AsyncUnaryCall(method, host, options, request);

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options, TRequest request)
        => _inner.Value.AsyncServerStreamingCall(method, host, options, request);

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options)
        => _inner.Value.AsyncClientStreamingCall(method, host, options);

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(Method<TRequest, TResponse> method, string? host, CallOptions options)
        => _inner.Value.AsyncDuplexStreamingCall(method, host, options);
}
