using System.Net;
using System.Net.Http;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Conduit.Tests.Support;

/// <summary>
/// A throwaway certificate authority for tests of TLS: a self-signed CA and server certificates it issues, written
/// as PEM files the way an operator's certbot would leave them. Clients in tests trust this CA explicitly; no test
/// turns certificate validation off. (Also compiled into Conduit.Functional.Tests.)
/// </summary>
public sealed class TestCa : IDisposable
{
    readonly ECDsa _key;
    public X509Certificate2 Certificate { get; }

    TestCa(ECDsa key, X509Certificate2 cert) => (_key, Certificate) = (key, cert);

    public static TestCa Create(string name = "Conduit Test CA")
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        return new TestCa(key, req.CreateSelfSigned(now.AddDays(-1), now.AddDays(30)));
    }

    /// <summary>A server certificate (with its private key) for these DNS names and IP addresses.</summary>
    public X509Certificate2 Issue(string[] dnsNames, IPAddress[]? ips = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest($"CN={(dnsNames.Length > 0 ? dnsNames[0] : ips![0].ToString())}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        foreach (var d in dnsNames) san.AddDnsName(d);
        foreach (var ip in ips ?? []) san.AddIpAddress(ip);
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var now = DateTimeOffset.UtcNow;
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7f;
        using var issued = req.Create(Certificate, now.AddHours(-1), now.AddDays(7), serial);
        return issued.CopyWithPrivateKey(key);
    }

    /// <summary>Writes the certificate (then this CA, as a chain file has it) and its key as PEM.</summary>
    public void WritePem(X509Certificate2 cert, string certsPath, string keyPath)
    {
        File.WriteAllText(certsPath, cert.ExportCertificatePem() + "\n" + Certificate.ExportCertificatePem() + "\n");
        File.WriteAllText(keyPath, cert.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem() + "\n");
    }

    public void WriteCaPem(string path) => File.WriteAllText(path, Certificate.ExportCertificatePem() + "\n");

    /// <summary>A client handler that trusts only this CA (the chain is built to it and the name checked), and tells
    /// <paramref name="seen"/> which certificate each server presented.</summary>
    public SocketsHttpHandler TrustingHandler(Action<X509Certificate2>? seen = null) => new()
    {
        MaxConnectionsPerServer = 64,
        SslOptions = new SslClientAuthenticationOptions
        {
            CertificateChainPolicy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                CustomTrustStore = { Certificate },
                RevocationMode = X509RevocationMode.NoCheck,
            },
            RemoteCertificateValidationCallback = (_, cert, _, errors) =>
            {
                if (cert is not null) seen?.Invoke(new X509Certificate2(cert));
                return errors == SslPolicyErrors.None;
            },
        },
    };

    public void Dispose()
    {
        Certificate.Dispose();
        _key.Dispose();
    }
}
