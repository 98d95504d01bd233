using Conduit.Keys;

namespace Conduit.Keys.Tests;

public sealed class PasswordHasherTests
{
    [Fact]
    public void Hash_IsPhcArgon2idWithTheDocumentedParameters()
    {
        var phc = PasswordHasher.Hash("correct horse");
        Assert.StartsWith("$argon2id$", phc);
        var parts = phc.Split('$');
        Assert.Equal(6, parts.Length);
        Assert.Equal("v=19", parts[2]);
        Assert.Equal("m=19456,t=2,p=1", parts[3]);
    }

    [Fact]
    public void Verify_AcceptsTheRightPasswordAndRejectsAWrongOne()
    {
        var phc = PasswordHasher.Hash("correct horse");
        Assert.True(PasswordHasher.Verify("correct horse", phc));
        Assert.False(PasswordHasher.Verify("correct horsE", phc));
        Assert.False(PasswordHasher.Verify("", phc));
    }

    [Fact]
    public void Hash_IsSaltedSoTheSamePasswordGivesDifferentStrings()
    {
        var a = PasswordHasher.Hash("same");
        var b = PasswordHasher.Hash("same");
        Assert.NotEqual(a, b);
        Assert.True(PasswordHasher.Verify("same", a));
        Assert.True(PasswordHasher.Verify("same", b));
    }

    [Fact]
    public void Verify_RejectsANonArgon2idString()
    {
        Assert.False(PasswordHasher.Verify("pw", "$2b$12$abcdefghijklmnopqrstuv"));
        Assert.False(PasswordHasher.Verify("pw", ""));
    }
}
