using Conduit.Common;

namespace Conduit.Media.Tests;

public class ContentHeadersTests
{
    [Theory]
    [InlineData("image/png", true)]
    [InlineData("IMAGE/PNG", true)]
    [InlineData("text/plain; charset=utf-8", true)]
    [InlineData("text/html", false)]
    [InlineData("image/svg+xml", false)]
    [InlineData("application/xhtml+xml", false)]
    [InlineData("application/octet-stream", false)]
    [InlineData("application/pdf", false)]
    public void Only_the_specs_safe_types_are_inline(string type, bool inline)
        => Assert.Equal(inline, ContentHeaders.IsInline(type));

    [Theory]
    [InlineData(null, "application/octet-stream")]
    [InlineData("", "application/octet-stream")]
    [InlineData("not a type", "application/octet-stream")]
    [InlineData("*/*", "application/octet-stream")]
    [InlineData("image/png", "image/png")]
    [InlineData("text/plain; charset=utf-8", "text/plain; charset=utf-8")]
    public void Content_types_are_kept_only_when_valid(string? given, string stored)
        => Assert.Equal(stored, ContentHeaders.Sanitise(given));

    [Theory]
    [InlineData("image/png", null, "inline")]
    [InlineData("text/html", null, "attachment")]
    [InlineData("image/png", "cat.png", "inline; filename=\"cat.png\"")]
    [InlineData("text/html", "a\"b.html", "attachment; filename=\"a_b.html\"; filename*=UTF-8''a%22b.html")]
    [InlineData("text/plain", "n\u00e4me.txt", "inline; filename=\"n_me.txt\"; filename*=UTF-8''n%C3%A4me.txt")]
    [InlineData("text/plain", "x\r\ny/../z\\w.txt", "inline; filename=\"x__y_.._z_w.txt\"")]
    [InlineData("text/plain", "100%.txt", "inline; filename=\"100_.txt\"; filename*=UTF-8''100%25.txt")]
    public void Content_disposition_follows_rfc_6266(string type, string? name, string expected)
        => Assert.Equal(expected, ContentHeaders.Disposition(type, name));

    [Theory]
    [InlineData("example.org", true)]
    [InlineData("example.org:8448", true)]
    [InlineData("1.2.3.4", true)]
    [InlineData("[::1]:8448", true)]
    [InlineData("[1234:5678::abcd]", true)]
    [InlineData("", false)]
    [InlineData("example.org:", false)]
    [InlineData("example.org:123456", false)]
    [InlineData("exa mple.org", false)]
    [InlineData("../etc", false)]
    [InlineData("[::1", false)]
    [InlineData("[1.2.3.4]", false)]
    public void Server_names_follow_the_grammar(string name, bool valid)
    {
        if (name == "../etc") Assert.False(Ids.IsValidMediaId(name));
        Assert.Equal(valid, name != "../etc" && Ids.IsValidServerName(name));
    }

    [Theory]
    [InlineData("AQwafuaFswefuhsfAFAgsw", true)]
    [InlineData("a-b_c", true)]
    [InlineData("..", false)]
    [InlineData("a/b", false)]
    [InlineData("a%2Fb", false)]
    [InlineData("", false)]
    public void Media_ids_allow_only_url_safe_base64_characters(string id, bool valid) => Assert.Equal(valid, Ids.IsValidMediaId(id));
}
