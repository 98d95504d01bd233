using System.Diagnostics;
using System.Diagnostics.Metrics;
using Conduit.Common.Metrics;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace Conduit.Common.Grpc;

/// <summary>
/// Counts gRPC calls a process makes to the services (conduit_grpc_client_calls_total by method and status) and the
/// time unary calls take (conduit_grpc_client_duration_seconds). A server stream (a watch, a sync's rooms part) counts
/// once, when it ends. Added to the clients only when metrics are on. Sits inside the Matrix-error interceptor, so
/// it sees the gRPC status.
/// </summary>
public sealed class GrpcClientMetrics : Interceptor
{
    static readonly string[] StatusNames = [.. Enumerable.Range(0, 17).Select(i => ((StatusCode)i).ToString())];

    readonly Counter<long> _calls;
    readonly Histogram<double> _duration;

    public GrpcClientMetrics(Meter meter)
    {
        _calls = meter.CreateCounter<long>("conduit.grpc.client.calls", null, "gRPC calls made to the services, by method and status.");
        _duration = meter.CreateHistogram("conduit.grpc.client.duration", "s", "Time unary gRPC calls to the services take, by method.",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
    }

    void Record(string method, StatusCode status, long? started)
    {
        var code = (int)status;
        var tags = new TagList { { "method", method }, { "status", code >= 0 && code < StatusNames.Length ? StatusNames[code] : "Unknown" } };
        _calls.Add(1, tags);
        if (started is { } s) _duration.Record(Stopwatch.GetElapsedTime(s).TotalSeconds, new KeyValuePair<string, object?>("method", method));
    }

    static StatusCode StatusOf(Exception e) => e switch
    {
        RpcException r => r.StatusCode,
        OperationCanceledException => StatusCode.Cancelled,
        MatrixException m => MatrixErrors.ToStatusCode(m.Status),
        _ => StatusCode.Unknown,
    };

    public override TResponse BlockingUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, BlockingUnaryCallContinuation<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var response = continuation(request, context);
            Record(context.Method.FullName, StatusCode.OK, started);
            return response;
        }
        catch (Exception e)
        {
            Record(context.Method.FullName, StatusOf(e), started);
            throw;
        }
    }

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        var call = continuation(request, context);
        return new AsyncUnaryCall<TResponse>(Observe(call.ResponseAsync, context.Method.FullName, started), call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, call.Dispose);
    }

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation)
    {
        var call = continuation(request, context);
        var reader = new Reader<TResponse>(call.ResponseStream, this, context.Method.FullName);
        return new AsyncServerStreamingCall<TResponse>(reader, call.ResponseHeadersAsync, call.GetStatus, call.GetTrailers, () =>
        {
            reader.Disposed();
            call.Dispose();
        });
    }

    async Task<TResponse> Observe<TResponse>(Task<TResponse> response, string method, long started)
    {
        try
        {
            var r = await response.ConfigureAwait(false);
            Record(method, StatusCode.OK, started);
            return r;
        }
        catch (Exception e)
        {
            Record(method, StatusOf(e), started);
            throw;
        }
    }

    /// <summary>Records the stream once: at its end, at its error, or (Cancelled) when it is disposed before either.</summary>
    sealed class Reader<T>(IAsyncStreamReader<T> inner, GrpcClientMetrics metrics, string method) : IAsyncStreamReader<T>
    {
        int _recorded;

        public T Current => inner.Current;

        public async Task<bool> MoveNext(CancellationToken cancellationToken)
        {
            try
            {
                var more = await inner.MoveNext(cancellationToken).ConfigureAwait(false);
                if (!more) Once(StatusCode.OK);
                return more;
            }
            catch (Exception e)
            {
                Once(StatusOf(e));
                throw;
            }
        }

        public void Disposed() => Once(StatusCode.Cancelled);

        void Once(StatusCode status)
        {
            if (Interlocked.Exchange(ref _recorded, 1) == 0) metrics.Record(method, status, null);
        }
    }
}
