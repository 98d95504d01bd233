using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Conduit.Common.Config;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.Logging;

namespace Conduit.Edge;

/// <summary>
/// HTTPS on the public listener from [global.tls] (Conduit's keys): <c>certs</c>, a PEM file with the server's
/// certificate first and its intermediates after it, and <c>key</c>, its PEM private key. The files are read at
/// start (a missing or unreadable one stops the server: <see cref="StartupException"/>) and looked at again on each
/// new TLS handshake: when either file's modification time has changed, the pair is read again, so a renewed
/// certificate (certbot, acme.sh) is served without a restart. A pair that does not load (a renewal half-written)
/// leaves the previous certificate in use and is tried again on the next handshake.
/// </summary>
public sealed class EdgeTls
{
    readonly string _certs, _key;
    readonly object _gate = new();
    ILogger? _log;
    (DateTime Certs, DateTime Key) _stamp;
    SslServerAuthenticationOptions _options;

    EdgeTls(string certs, string key)
    {
        _certs = certs;
        _key = key;
        _stamp = Stamp();
        _options = Load();
    }

    /// <summary>The TLS settings when [global.tls] is set, else null; a missing key or an unreadable file stops the start.</summary>
    public static EdgeTls? FromConfig(GlobalConfig config, string source)
    {
        if (config.Tls is not { } tls || (string.IsNullOrEmpty(tls.Certs) && string.IsNullOrEmpty(tls.Key))) return null;
        if (string.IsNullOrEmpty(tls.Certs) || string.IsNullOrEmpty(tls.Key))
            throw new ConfigException($"{source}: [global.tls] needs both 'certs' (the PEM certificate chain) and 'key' (its PEM private key)");
        try
        {
            return new EdgeTls(Path.GetFullPath(tls.Certs), Path.GetFullPath(tls.Key));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
        {
            throw new StartupException($"cannot load the TLS certificate from global.tls certs = {tls.Certs}, key = {tls.Key}: {e.Message}", e);
        }
    }

    /// <summary>Where reload failures are reported, once the host has its logging.</summary>
    public void UseLogger(ILogger log) => _log = log;

    /// <summary>For <c>ListenOptions.UseHttps</c>: the current certificate for each new connection.</summary>
    public TlsHandshakeCallbackOptions HandshakeOptions() => new()
    {
        OnConnection = _ => ValueTask.FromResult(Current()),
    };

    /// <summary>The settings for a new handshake, after reading the files again if they changed.</summary>
    public SslServerAuthenticationOptions Current()
    {
        // Two stat calls per handshake: cheap beside the handshake itself, and no watcher thread to miss an event
        // (an inotify watch on a file replaced by rename, as certbot does, follows the old inode).
        var stamp = Stamp();
        if (stamp == _stamp) return Volatile.Read(ref _options);
        lock (_gate)
        {
            if (stamp == _stamp) return _options;
            try
            {
                _options = Load();
                _log?.LogInformation("TLS certificate reloaded from {Certs}", _certs);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException or ArgumentException)
            {
                _log?.LogWarning("TLS certificate in {Certs} / {Key} did not load, still serving the previous one: {Error}", _certs, _key, e.Message);
            }
            // Either way this pair of files was looked at: the next change of either is tried again.
            _stamp = stamp;
            return _options;
        }
    }

    (DateTime, DateTime) Stamp() => (File.GetLastWriteTimeUtc(_certs), File.GetLastWriteTimeUtc(_key));

    SslServerAuthenticationOptions Load()
    {
        if (!File.Exists(_certs)) throw new FileNotFoundException($"no such file: {_certs}");
        if (!File.Exists(_key)) throw new FileNotFoundException($"no such file: {_key}");
        var leaf = X509Certificate2.CreateFromPemFile(_certs, _key);
        var chain = new X509Certificate2Collection();
        chain.ImportFromPemFile(_certs);
        if (chain.Count > 0) chain.RemoveAt(0);
        return new SslServerAuthenticationOptions
        {
            // The intermediates are sent with the leaf; offline: no fetching of missing issuers at handshake time.
            ServerCertificateContext = SslStreamCertificateContext.Create(leaf, chain, offline: true),
            ApplicationProtocols = [SslApplicationProtocol.Http11],
        };
    }
}
