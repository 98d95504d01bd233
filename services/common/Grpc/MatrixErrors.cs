using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Conduit.Common.Grpc;

/// <summary>
/// Carries <see cref="MatrixException"/> across gRPC: the server interceptor turns it into an
/// <see cref="RpcException"/> with trailers, the client interceptor turns that back into the same MatrixException.
/// The message and extra fields travel in binary (<c>-bin</c>) trailers, since they may hold any Unicode text.
/// </summary>
public static class MatrixErrors
{
    public const string ErrCodeTrailer = "matrix-errcode";
    public const string StatusTrailer = "matrix-status";
    /// <summary>UTF-8 of the message (binary trailer: base64 on the wire, bytes in Metadata).</summary>
    public const string MessageTrailer = "matrix-message-bin";
    /// <summary>UTF-8 JSON of <see cref="MatrixException.Extra"/>, if any.</summary>
    public const string ExtraTrailer = "matrix-extra-bin";

    /// <summary>Converts MatrixExceptions that come back from calls through the result (unary and streamed reads).</summary>
    public static CallInvoker WithMatrixErrors(this CallInvoker invoker) => invoker.Intercept(new MatrixErrorClientInterceptor());

    public static StatusCode ToStatusCode(int httpStatus) => httpStatus switch
    {
        400 => StatusCode.InvalidArgument,
        401 => StatusCode.Unauthenticated,
        403 => StatusCode.PermissionDenied,
        404 => StatusCode.NotFound,
        429 => StatusCode.ResourceExhausted,
        _ => StatusCode.Unknown,
    };

    public static RpcException ToRpcException(MatrixException e)
    {
        var trailers = new Metadata
        {
            { ErrCodeTrailer, AsciiOnly(e.ErrCode) },
            { StatusTrailer, e.Status.ToString(CultureInfo.InvariantCulture) },
            { MessageTrailer, Encoding.UTF8.GetBytes(e.Message) },
        };
        if (e.Extra is not null) trailers.Add(ExtraTrailer, Encoding.UTF8.GetBytes(e.Extra.ToJsonString()));
        return new RpcException(new Status(ToStatusCode(e.Status), e.Message), trailers, e.Message);
    }

    /// <summary>The MatrixException an RpcException carries, or null if it carries none.</summary>
    public static MatrixException? FromRpcException(RpcException e)
    {
        var errcode = e.Trailers.GetValue(ErrCodeTrailer);
        var statusText = e.Trailers.GetValue(StatusTrailer);
        if (errcode is null || statusText is null || !int.TryParse(statusText, NumberStyles.Integer, CultureInfo.InvariantCulture, out var status))
        {
            return null;
        }
        var messageBytes = e.Trailers.GetValueBytes(MessageTrailer);
        var message = messageBytes is null ? e.Status.Detail : Encoding.UTF8.GetString(messageBytes);
        var mx = new MatrixException(errcode, status, message);
        if (e.Trailers.GetValueBytes(ExtraTrailer) is { } extra)
        {
            try
            {
                mx.Extra = JsonNode.Parse(extra) as JsonObject;
            }
            catch (System.Text.Json.JsonException)
            {
                // A malformed extra is dropped; the error itself still stands.
            }
        }
        return mx;
    }

    private static string AsciiOnly(string s)
    {
        foreach (var c in s)
        {
            if (c < 0x20 || c > 0x7E) return new string(s.Select(ch => ch is >= (char)0x20 and <= (char)0x7E ? ch : '_').ToArray());
        }
        return s;
    }
}

/// <summary>Server side: a MatrixException thrown by a handler leaves as an RpcException with the matrix-* trailers.</summary>
public sealed class MatrixErrorServerInterceptor : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context).ConfigureAwait(false);
        }
        catch (MatrixException e)
        {
            throw MatrixErrors.ToRpcException(e);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context).ConfigureAwait(false);
        }
        catch (MatrixException e)
        {
            throw MatrixErrors.ToRpcException(e);
        }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(requestStream, context).ConfigureAwait(false);
        }
        catch (MatrixException e)
        {
            throw MatrixErrors.ToRpcException(e);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context).ConfigureAwait(false);
        }
        catch (MatrixException e)
        {
            throw MatrixErrors.ToRpcException(e);
        }
    }
}

/// <summary>
/// Client side: an RpcException carrying the matrix-* trailers is rethrown as the MatrixException it stands for
/// (detected by trailers, never by message text); any other RpcException passes unchanged.
/// </summary>
public sealed class MatrixErrorClientInterceptor : Interceptor
{
    public override TResponse BlockingUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, BlockingUnaryCallContinuation<TRequest, TResponse> continuation)
    {
        try
        {
            return continuation(request, context);
        }
        catch (RpcException e) when (MatrixErrors.FromRpcException(e) is { } mx)
        {
            throw mx;
        }
    }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
    {
        var call = continuation(request, context);
        return new AsyncUnaryCall<TResponse>(Convert(call.ResponseAsync), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation)
    {
        var call = continuation(request, context);
        return new AsyncServerStreamingCall<TResponse>(new Reader<TResponse>(call.ResponseStream), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context, AsyncClientStreamingCallContinuation<TRequest, TResponse> continuation)
    {
        var call = continuation(context);
        return new AsyncClientStreamingCall<TRequest, TResponse>(call.RequestStream, Convert(call.ResponseAsync), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    public override AsyncDuplexStreamingCall<TRequest, TResponse> AsyncDuplexStreamingCall<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context, AsyncDuplexStreamingCallContinuation<TRequest, TResponse> continuation)
    {
        var call = continuation(context);
        return new AsyncDuplexStreamingCall<TRequest, TResponse>(call.RequestStream, new Reader<TResponse>(call.ResponseStream), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    private static async Task<TResponse> Convert<TResponse>(Task<TResponse> response)
    {
        try
        {
            return await response.ConfigureAwait(false);
        }
        catch (RpcException e) when (MatrixErrors.FromRpcException(e) is { } mx)
        {
            throw mx;
        }
    }

    private sealed class Reader<T>(IAsyncStreamReader<T> inner) : IAsyncStreamReader<T>
    {
        public T Current => inner.Current;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            try
            {
                return await inner.MoveNext(cancellationToken).ConfigureAwait(false);
            }
            catch (RpcException e) when (MatrixErrors.FromRpcException(e) is { } mx)
            {
                throw mx;
            }
        }
    }
}
