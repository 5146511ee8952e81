using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Microsoft.ML.Hazy.Interpretation;
using NUnit.Framework;

namespace Microsoft.ML.Hazy.Tests.Interpretation;

/// <summary>The PNG heat maps, read back by a small independent decoder.</summary>
public class AttributionHeatMapTests
{
    private static readonly byte[] s_signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Decodes an 8-bit RGB, non-interlaced PNG with filter type 0 on every line, checking every chunk's CRC.</summary>
    private static (int Width, int Height, byte[] Rgb) Decode(byte[] png)
    {
        Assert.That(png.AsSpan(0, 8).ToArray(), Is.EqualTo(s_signature));
        int at = 8, width = 0, height = 0;
        var idat = new MemoryStream();
        var types = new List<string>();
        while (at < png.Length)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(at));
            string type = Encoding.ASCII.GetString(png, at + 4, 4);
            var data = png.AsSpan(at + 8, length);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length));
            Assert.That(crc, Is.EqualTo(Crc32(png.AsSpan(at + 4, 4 + length))), $"CRC of {type}");
            types.Add(type);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(data);
                height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                Assert.That(data[8..].ToArray(), Is.EqualTo(new byte[] { 8, 2, 0, 0, 0 }), "8-bit RGB, deflate, no filter method variant, no interlace");
            }
            else if (type == "IDAT")
                idat.Write(data);
            at += 12 + length;
        }

        Assert.That(types[0], Is.EqualTo("IHDR"));
        Assert.That(types[^1], Is.EqualTo("IEND"));
        idat.Position = 0;
        var raw = new MemoryStream();
        using (var zlib = new ZLibStream(idat, CompressionMode.Decompress))
            zlib.CopyTo(raw);
        var bytes = raw.ToArray();
        Assert.That(bytes, Has.Length.EqualTo(height * (1 + width * 3)));
        var rgb = new byte[width * height * 3];
        for (int y = 0; y < height; y++)
        {
            Assert.That(bytes[y * (1 + width * 3)], Is.EqualTo(0), "filter type 0");
            Array.Copy(bytes, y * (1 + width * 3) + 1, rgb, y * width * 3, width * 3);
        }

        return (width, height, rgb);
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }

        return ~crc;
    }

    private static (byte, byte, byte) Pixel(byte[] rgb, int width, int x, int y) => (rgb[(y * width + x) * 3], rgb[(y * width + x) * 3 + 1], rgb[(y * width + x) * 3 + 2]);

    [Test]
    public void GridHasTheGeometryAndTheColoursOfItsValues()
    {
        const int rows = 2, columns = 2, h = 2, w = 3, scale = 2, gap = 1;
        float[] maps =
        [
            -2, 0, 2, 1, -1, 0.5f,     // row 0, map 0: signed → diverging
            0, 1, 2, 3, 4, 4,          // row 0, map 1: non-negative → sequential
            0, 0, 0, 0, 0, 0,          // row 1, map 0: all zero
            1, 1, 1, 1, 1, 1,          // row 1, map 1
        ];
        float[] images = [0, 1, 2, 3, 4, 5, /* row 1 */ 7, 7, 7, 7, 7, 7];
        var stream = new MemoryStream();
        AttributionHeatMap.WriteGrid(stream, maps, rows, columns, h, w, images, scale, gap);
        var (width, height, rgb) = Decode(stream.ToArray());
        Assert.That(width, Is.EqualTo(3 * w * scale + 2 * gap));
        Assert.That(height, Is.EqualTo(rows * h * scale + gap));

        (byte, byte, byte) At(int row, int column, int y, int x, int dy = 0, int dx = 0) =>
            Pixel(rgb, width, column * (w * scale + gap) + x * scale + dx, row * (h * scale + gap) + y * scale + dy);
        (byte, byte, byte) white = (255, 255, 255), red = (255, 0, 0), blue = (0, 0, 255);
        // Input image in grey, from its minimum (black) to its maximum (white).
        Assert.That(At(0, 0, 0, 0), Is.EqualTo(((byte)0, (byte)0, (byte)0)));
        Assert.That(At(0, 0, 1, 2, 1, 1), Is.EqualTo(white));
        Assert.That(At(0, 0, 0, 1), Is.EqualTo(((byte)51, (byte)51, (byte)51)));
        // Diverging map: 0 white, max |v| red, −max |v| blue, half of max light red; each value fills scale × scale pixels.
        Assert.That(At(0, 1, 0, 1), Is.EqualTo(white));
        Assert.That(At(0, 1, 0, 2), Is.EqualTo(red));
        Assert.That(At(0, 1, 0, 2, 1, 1), Is.EqualTo(red));
        Assert.That(At(0, 1, 0, 0), Is.EqualTo(blue));
        Assert.That(At(0, 1, 1, 0), Is.EqualTo(((byte)255, (byte)128, (byte)128)));
        // Sequential map: minimum at the ramp's start, maximum at its end.
        Assert.That(At(0, 2, 0, 0), Is.EqualTo(((byte)68, (byte)1, (byte)84)));
        Assert.That(At(0, 2, 1, 1), Is.EqualTo(((byte)253, (byte)231, (byte)37)));
        Assert.That(At(0, 2, 0, 2), Is.EqualTo(AttributionHeatMap.SequentialColor(0.5)));
        // A constant image is black; an all-zero map sits at the ramp's start; gaps are white.
        Assert.That(At(1, 0, 0, 0), Is.EqualTo(((byte)0, (byte)0, (byte)0)));
        Assert.That(At(1, 1, 1, 1), Is.EqualTo(((byte)68, (byte)1, (byte)84)));
        Assert.That(Pixel(rgb, width, w * scale, 0), Is.EqualTo(white));
        Assert.That(Pixel(rgb, width, 0, h * scale), Is.EqualTo(white));
    }

    [Test]
    public void SingleMapFileStartsWithTheSignatureAndForcedDivergingColours()
    {
        string path = Path.Combine(Path.GetTempPath(), $"hazy-heatmap-{Guid.NewGuid():N}.png");
        try
        {
            AttributionHeatMap.Save(path, [0, 1, 2, 4], 2, 2, scale: 3, coloring: HeatMapColoring.Diverging);
            var bytes = File.ReadAllBytes(path);
            Assert.That(bytes.AsSpan(0, 8).ToArray(), Is.EqualTo(s_signature));
            var (width, height, rgb) = Decode(bytes);
            Assert.That((width, height), Is.EqualTo((6, 6)));
            Assert.That(Pixel(rgb, width, 0, 0), Is.EqualTo(((byte)255, (byte)255, (byte)255)));
            Assert.That(Pixel(rgb, width, 5, 5), Is.EqualTo(((byte)255, (byte)0, (byte)0)));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void ChannelsSumAndBadSizesAreRejected()
    {
        Assert.That(AttributionHeatMap.SumChannels([1, -2, 3, -4], 1, 2, absolute: true), Is.EqualTo(new[] { 4f, 6 }));
        Assert.That(AttributionHeatMap.SumChannels([1, -2, 3, -4], 1, 2), Is.EqualTo(new[] { 4f, -6 }));
        var maps = Assert.Throws<ArgumentException>(() => AttributionHeatMap.WriteGrid(new MemoryStream(), new float[10], 2, 1, 2, 3))!;
        Assert.That(maps.Message, Does.Contain("10").And.Contain("12"));
        Assert.Throws<ArgumentException>(() => AttributionHeatMap.WriteGrid(new MemoryStream(), new float[12], 2, 1, 2, 3, new float[5]));
        Assert.Throws<ArgumentOutOfRangeException>(() => AttributionHeatMap.WriteGrid(new MemoryStream(), new float[12], 2, 1, 2, 3, scale: 0));
    }
}
