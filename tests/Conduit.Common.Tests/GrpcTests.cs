using System.Net;
using System.Text.Json.Nodes;
using Conduit.Common.Grpc;
using Conduit.Common.Tests.Protos;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Conduit.Common.Tests;

public sealed class EchoImpl : EchoService.EchoServiceBase
{
    public readonly TaskCompletionSource StreamCancelled = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override Task<EchoReply> Echo(EchoRequest request, ServerCallContext context)
    {
        if (request.FailErrcode.Length > 0)
        {
            throw new MatrixException(request.FailErrcode, request.FailStatus, request.Text)
            {
                Extra = request.FailStatus == 429 ? new JsonObject { ["retry_after_ms"] = 1500 } : null,
            };
        }
        if (request.Text == "boom") throw new InvalidOperationException("not a Matrix error");
        if (request.Text == "rpc") throw new RpcException(new Status(StatusCode.Unavailable, "down"));
        var header = request.HeaderName.Length > 0 ? context.RequestHeaders.GetValue(request.HeaderName) ?? "" : "";
        return Task.FromResult(new EchoReply { Text = request.Text, Header = header });
    }

    public override async Task Count(CountRequest request, IServerStreamWriter<CountReply> responseStream, ServerCallContext context)
    {
        try
        {
            for (var i = 0; i < request.N; i++)
            {
                if (request.FailAfter > 0 && i == request.FailAfter)
                {
                    throw new MatrixException("M_LIMIT_EXCEEDED", 429, "slow down ✋");
                }
                if (request.DelayMs > 0) await Task.Delay(request.DelayMs, context.CancellationToken);
                await responseStream.WriteAsync(new CountReply { I = i });
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            StreamCancelled.TrySetResult();
            throw;
        }
    }
}

/// <summary>A Kestrel h2c server on a loopback port, shared by the network tests.</summary>
public sealed class EchoServerFixture : IAsyncLifetime
{
    private WebApplication? _app;

    public EchoImpl Impl { get; } = new();

    public GrpcChannel Channel { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc(o => o.Interceptors.Add<MatrixErrorServerInterceptor>());
        builder.Services.AddSingleton(Impl);
        _app = builder.Build();
        _app.MapGrpcService<EchoImpl>();
        await _app.StartAsync();
        Channel = GrpcChannel.ForAddress(_app.Urls.First());
    }

    public async Task DisposeAsync()
    {
        Channel.Dispose();
        if (_app is not null) await _app.DisposeAsync();
    }
}

public sealed class GrpcTests(EchoServerFixture server) : IClassFixture<EchoServerFixture>
{
    private readonly EchoImpl _impl = new();

    private CallInvoker Invoker(string transport) => transport switch
    {
        "inproc" => InProcessCallInvoker.Create(null, b => EchoService.BindService(b, _impl)),
        "h2c" => server.Channel.CreateCallInvoker(),
        _ => throw new ArgumentException(transport),
    };

    private EchoImpl Impl(string transport) => transport == "inproc" ? _impl : server.Impl;

    private EchoService.EchoServiceClient Client(string transport) => new(Invoker(transport).WithMatrixErrors());

    public static TheoryData<string> Transports => new() { "inproc", "h2c" };

    [Theory, MemberData(nameof(Transports))]
    public async Task UnaryWorks(string transport)
    {
        var client = Client(transport);
        Assert.Equal("hi", (await client.EchoAsync(new EchoRequest { Text = "hi" })).Text);
        Assert.Equal("sync", client.Echo(new EchoRequest { Text = "sync" }).Text);
    }

    [Theory, MemberData(nameof(Transports))]
    public async Task HeadersReachTheServer(string transport)
    {
        var client = Client(transport);
        var reply = await client.EchoAsync(new EchoRequest { Text = "x", HeaderName = "x-test" }, new Metadata { { "x-test", "value-1" } });
        Assert.Equal("value-1", reply.Header);
    }

    [Theory, MemberData(nameof(Transports))]
    public async Task InternalSecretIsAdded(string transport)
    {
        var headers = new Metadata { { "x-other", "kept" } };
        var client = new EchoService.EchoServiceClient(Invoker(transport).WithInternalSecret("s3cret").WithMatrixErrors());
        var reply = await client.EchoAsync(new EchoRequest { HeaderName = InternalAuth.HeaderName }, headers);
        Assert.Equal("s3cret", reply.Header);
        Assert.Equal("kept", (await client.EchoAsync(new EchoRequest { HeaderName = "x-other" }, headers)).Header);
        Assert.Single(headers); // the caller's Metadata is not modified
    }

    [Theory, MemberData(nameof(Transports))]
    public async Task ServerStreamingYieldsAllItems(string transport)
    {
        var client = Client(transport);
        using var call = client.Count(new CountRequest { N = 100 });
        var items = new List<int>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None)) items.Add(call.ResponseStream.Current.I);
        Assert.Equal(Enumerable.Range(0, 100), items);
        Assert.Equal(StatusCode.OK, call.GetStatus().StatusCode);
    }

    [Theory, MemberData(nameof(Transports))]
    public async Task CancellationStopsTheStream(string transport)
    {
        var client = Client(transport);
        using var cts = new CancellationTokenSource();
        using var call = client.Count(new CountRequest { N = 1_000_000, DelayMs = 5 }, cancellationToken: cts.Token);
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        await cts.CancelAsync();
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
            }
        });
        Assert.Equal(StatusCode.Cancelled, e.StatusCode);
        // The handler sees the cancellation.
        await Impl(transport).StreamCancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Theory, MemberData(nameof(Transports))]
    public async Task MatrixExceptionCrossesUnary(string transport)
    {
        var client = Client(transport);
        var e = await Assert.ThrowsAsync<MatrixException>(() => client.EchoAsync(new EchoRequest { Text = "no such room", FailErrcode = "M_NOT_FOUND", FailStatus = 404 }).ResponseAsync);
        Assert.Equal("M_NOT_FOUND", e.ErrCode);
        Assert.Equal(404, e.Status);
        Assert.Equal("no such room", e.Message);
        Assert.Null(e.Extra);

        var limited = Assert.Throws<MatrixException>(() => client.Echo(new EchoRequest { Text = "limité ü", FailErrcode = "M_LIMIT_EXCEEDED", FailStatus = 429 }));
        Assert.Equal("M_LIMIT_EXCEEDED", limited.ErrCode);
        Assert.Equal(429, limited.Status);
        Assert.Equal("limité ü", limited.Message);
        Assert.Equal(1500, (int)limited.Extra!["retry_after_ms"]!);
    }

    [Theory, MemberData(nameof(Transports))]
    public async Task RpcExceptionWithoutTrailersStaysRpcException(string transport)
    {
        var client = Client(transport);
        var raw = new EchoService.EchoServiceClient(Invoker(transport));
        var e = await Assert.ThrowsAsync<RpcException>(() => client.EchoAsync(new EchoRequest { Text = "boom" }).ResponseAsync);
        Assert.Equal(StatusCode.Unknown, e.StatusCode);
        var rpc = await Assert.ThrowsAsync<RpcException>(() => client.EchoAsync(new EchoRequest { Text = "rpc" }).ResponseAsync);
        Assert.Equal(StatusCode.Unavailable, rpc.StatusCode);
        Assert.Equal("down", rpc.Status.Detail);
        // Without the client interceptor, a Matrix error is an RpcException with a mapped status code and trailers.
        var mapped = await Assert.ThrowsAsync<RpcException>(() => raw.EchoAsync(new EchoRequest { Text = "t", FailErrcode = "M_FORBIDDEN", FailStatus = 403 }).ResponseAsync);
        Assert.Equal(StatusCode.PermissionDenied, mapped.StatusCode);
        Assert.Equal("M_FORBIDDEN", mapped.Trailers.GetValue(MatrixErrors.ErrCodeTrailer));
    }

    [Theory, MemberData(nameof(Transports))]
    public async Task MatrixExceptionCrossesServerStreaming(string transport)
    {
        var client = Client(transport);
        using var call = client.Count(new CountRequest { N = 10, FailAfter = 3 });
        var items = new List<int>();
        var e = await Assert.ThrowsAsync<MatrixException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None)) items.Add(call.ResponseStream.Current.I);
        });
        Assert.Equal([0, 1, 2], items);
        Assert.Equal("M_LIMIT_EXCEEDED", e.ErrCode);
        Assert.Equal(429, e.Status);
        Assert.Equal("slow down ✋", e.Message);
    }

    [Fact]
    public async Task InProcessUnboundMethodIsUnimplemented()
    {
        var client = new EchoService.EchoServiceClient(InProcessCallInvoker.Create(null));
        var e = await Assert.ThrowsAsync<RpcException>(() => client.EchoAsync(new EchoRequest()).ResponseAsync);
        Assert.Equal(StatusCode.Unimplemented, e.StatusCode);
    }

    [Fact]
    public async Task InProcessDeadlineCancelsTheHandler()
    {
        var client = Client("inproc");
        using var call = client.Count(new CountRequest { N = 1_000_000, DelayMs = 20 }, deadline: DateTime.UtcNow.AddMilliseconds(200));
        var e = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
            }
        });
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        await _impl.StreamCancelled.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task InternalSecretServerInterceptorRejectsWrongSecret()
    {
        var invoker = InProcessCallInvoker.Create(null, [new InternalSecretServerInterceptor("right"), new MatrixErrorServerInterceptor()],
            b => EchoService.BindService(b, _impl));
        var good = new EchoService.EchoServiceClient(invoker.WithInternalSecret("right"));
        Assert.Equal("ok", (await good.EchoAsync(new EchoRequest { Text = "ok" })).Text);
        var bad = new EchoService.EchoServiceClient(invoker.WithInternalSecret("wrong"));
        var e = await Assert.ThrowsAsync<RpcException>(() => bad.EchoAsync(new EchoRequest { Text = "ok" }).ResponseAsync);
        Assert.Equal(StatusCode.Unauthenticated, e.StatusCode);
        var none = new EchoService.EchoServiceClient(invoker);
        Assert.Equal(StatusCode.Unauthenticated, (await Assert.ThrowsAsync<RpcException>(() => none.EchoAsync(new EchoRequest()).ResponseAsync)).StatusCode);
    }
}
