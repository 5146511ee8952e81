using System.Buffers.Binary;
using System.IO.Compression;
using Microsoft.ML.Hazy.Data;

namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>How <see cref="AttributionHeatMap"/> colours a map.</summary>
public enum HeatMapColoring
{
    /// <summary><see cref="Diverging"/> when the map has a negative value, else <see cref="Sequential"/>.</summary>
    Auto,

    /// <summary>Blue (−max |v|) through white (0) to red (+max |v|), symmetric around 0 per map.</summary>
    Diverging,

    /// <summary>A viridis-like ramp from dark purple (the map's minimum, or 0 if higher) to yellow (its maximum).</summary>
    Sequential,
}

/// <summary>
/// Writes image-shaped attributions as PNG heat maps: one map, or a grid of rows × columns of H × W maps with an
/// optional greyscale input image in the first column. The PNG encoder is built in, so no native imaging library
/// is needed.
/// </summary>
public static class AttributionHeatMap
{
    private static readonly (double At, byte R, byte G, byte B)[] s_viridis =
        [(0, 68, 1, 84), (0.25, 59, 82, 139), (0.5, 33, 145, 140), (0.75, 94, 201, 98), (1, 253, 231, 37)];

    /// <summary>Writes one H × W map to a PNG file.</summary>
    /// <param name="path">The file to write.</param>
    /// <param name="map">H × W values, row-major.</param>
    /// <param name="height">H.</param>
    /// <param name="width">W.</param>
    /// <param name="scale">Pixels per value along each axis.</param>
    /// <param name="coloring">The colour map.</param>
    public static void Save(string path, ReadOnlySpan<float> map, int height, int width, int scale = 1, HeatMapColoring coloring = HeatMapColoring.Auto)
        => SaveGrid(path, map, 1, 1, height, width, default, scale, 0, coloring);

    /// <summary>Writes a grid of maps to a PNG file; see <see cref="WriteGrid"/>.</summary>
    /// <param name="path">The file to write.</param>
    /// <param name="maps">rows × columns × H × W values, row-major: the maps of grid row r are r·columns to r·columns + columns − 1.</param>
    /// <param name="rows">Grid rows.</param>
    /// <param name="columns">Maps per grid row.</param>
    /// <param name="height">H.</param>
    /// <param name="width">W.</param>
    /// <param name="images">Empty, or rows × H × W input images drawn in grey in an extra first column (scaled from each image's minimum to maximum).</param>
    /// <param name="scale">Pixels per value along each axis.</param>
    /// <param name="gap">White pixels between cells.</param>
    /// <param name="coloring">The colour map.</param>
    public static void SaveGrid(string path, ReadOnlySpan<float> maps, int rows, int columns, int height, int width,
        ReadOnlySpan<float> images = default, int scale = 1, int gap = 1, HeatMapColoring coloring = HeatMapColoring.Auto)
    {
        using var png = new MemoryStream();
        WriteGrid(png, maps, rows, columns, height, width, images, scale, gap, coloring);
        AtomicFile.WriteAllBytes(path, png.GetBuffer().AsMemory(0, (int)png.Length));
    }

    /// <summary>
    /// Writes a grid of maps as a PNG image (8-bit RGB) of width c·W·scale + (c − 1)·gap and height
    /// rows·H·scale + (rows − 1)·gap, c = columns (+ 1 with images). Each map is coloured on its own range.
    /// </summary>
    /// <param name="stream">The stream to write.</param>
    /// <param name="maps">rows × columns × H × W values, row-major: the maps of grid row r are r·columns to r·columns + columns − 1.</param>
    /// <param name="rows">Grid rows.</param>
    /// <param name="columns">Maps per grid row.</param>
    /// <param name="height">H.</param>
    /// <param name="width">W.</param>
    /// <param name="images">Empty, or rows × H × W input images drawn in grey in an extra first column (scaled from each image's minimum to maximum).</param>
    /// <param name="scale">Pixels per value along each axis.</param>
    /// <param name="gap">White pixels between cells.</param>
    /// <param name="coloring">The colour map.</param>
    public static void WriteGrid(Stream stream, ReadOnlySpan<float> maps, int rows, int columns, int height, int width,
        ReadOnlySpan<float> images = default, int scale = 1, int gap = 1, HeatMapColoring coloring = HeatMapColoring.Auto)
    {
        ArgumentNullException.ThrowIfNull(stream);
        foreach (var (value, name) in new[] { (rows, nameof(rows)), (columns, nameof(columns)), (height, nameof(height)), (width, nameof(width)), (scale, nameof(scale)) })
            AttributionChecks.Positive(value, name);
        ArgumentOutOfRangeException.ThrowIfNegative(gap);
        int cell = height * width;
        if (maps.Length != (long)rows * columns * cell)
            throw new ArgumentException($"'{nameof(maps)}' holds {maps.Length} values; expected rows × columns × H × W = {rows} × {columns} × {height} × {width} = {(long)rows * columns * cell}.", nameof(maps));
        if (!images.IsEmpty && images.Length != (long)rows * cell)
            throw new ArgumentException($"'{nameof(images)}' holds {images.Length} values; expected none or rows × H × W = {rows} × {height} × {width} = {(long)rows * cell}.", nameof(images));
        int offset = images.IsEmpty ? 0 : 1, gridColumns = columns + offset;
        int imageWidth = gridColumns * width * scale + (gridColumns - 1) * gap, imageHeight = rows * height * scale + (rows - 1) * gap;
        var pixels = new byte[(long)imageWidth * imageHeight * 3];
        pixels.AsSpan().Fill(255);
        var colours = new byte[cell * 3];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < gridColumns; c++)
            {
                if (c < offset)
                    Grey(images.Slice(r * cell, cell), colours);
                else
                    Colour(maps.Slice((r * columns + c - offset) * cell, cell), coloring, colours);
                int top = r * (height * scale + gap), left = c * (width * scale + gap);
                for (int y = 0; y < height * scale; y++)
                {
                    var line = pixels.AsSpan(((top + y) * imageWidth + left) * 3, width * scale * 3);
                    int source = y / scale * width;
                    for (int x = 0; x < width * scale; x++)
                        colours.AsSpan((source + x / scale) * 3, 3).CopyTo(line.Slice(x * 3, 3));
                }
            }
        }

        Png.WriteRgb(stream, pixels, imageWidth, imageHeight);
    }

    /// <summary>The colour of <paramref name="value"/> in the diverging map of a map whose largest |value| is <paramref name="maxAbs"/>.</summary>
    /// <param name="value">The value.</param>
    /// <param name="maxAbs">The largest absolute value of the map; 0 gives white.</param>
    public static (byte R, byte G, byte B) DivergingColor(float value, float maxAbs)
    {
        double t = maxAbs > 0 ? Math.Clamp(value / maxAbs, -1, 1) : 0;
        byte fade = (byte)Math.Round(255 * (1 - Math.Abs(t)));
        return t >= 0 ? ((byte)255, fade, fade) : (fade, fade, (byte)255);
    }

    /// <summary>The colour of <paramref name="t"/> ∈ [0, 1] in the sequential map.</summary>
    /// <param name="t">The position on the ramp, clamped to [0, 1].</param>
    public static (byte R, byte G, byte B) SequentialColor(double t)
    {
        t = Math.Clamp(double.IsNaN(t) ? 0 : t, 0, 1);
        int i = Math.Min((int)(t * (s_viridis.Length - 1)), s_viridis.Length - 2);
        var (a, b) = (s_viridis[i], s_viridis[i + 1]);
        double u = (t - a.At) / (b.At - a.At);
        static byte Mix(byte p, byte q, double u) => (byte)Math.Round(p + (q - p) * u);
        return (Mix(a.R, b.R, u), Mix(a.G, b.G, u), Mix(a.B, b.B, u));
    }

    /// <summary>Sums the channels of [C, H, W] maps into H × W maps, of absolute values if <paramref name="absolute"/>.</summary>
    /// <param name="maps">count × C × H·W values, row-major.</param>
    /// <param name="count">The number of maps.</param>
    /// <param name="channels">C.</param>
    /// <param name="absolute">Whether to sum absolute values.</param>
    /// <returns>count × H·W values.</returns>
    public static float[] SumChannels(ReadOnlySpan<float> maps, int count, int channels, bool absolute = false)
    {
        AttributionChecks.Positive(count, nameof(count));
        AttributionChecks.Positive(channels, nameof(channels));
        if (maps.Length % (count * channels) != 0)
            throw new ArgumentException($"'{nameof(maps)}' holds {maps.Length} values, not a multiple of count × channels = {count * channels}.", nameof(maps));
        int pixels = maps.Length / (count * channels);
        var result = new float[count * pixels];
        for (int r = 0; r < count; r++)
            for (int c = 0; c < channels; c++)
                for (int p = 0; p < pixels; p++)
                {
                    float v = maps[(r * channels + c) * pixels + p];
                    result[r * pixels + p] += absolute ? Math.Abs(v) : v;
                }

        return result;
    }

    private static void Colour(ReadOnlySpan<float> map, HeatMapColoring coloring, byte[] colours)
    {
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (float v in map)
        {
            min = Math.Min(min, v);
            max = Math.Max(max, v);
        }

        bool diverging = coloring == HeatMapColoring.Diverging || (coloring == HeatMapColoring.Auto && min < 0);
        float maxAbs = Math.Max(Math.Abs(min), Math.Abs(max)), low = Math.Min(min, 0);
        for (int i = 0; i < map.Length; i++)
        {
            var (r, g, b) = diverging ? DivergingColor(map[i], maxAbs) : SequentialColor(max > low ? (map[i] - low) / (max - low) : 0);
            colours[i * 3] = r;
            colours[i * 3 + 1] = g;
            colours[i * 3 + 2] = b;
        }
    }

    private static void Grey(ReadOnlySpan<float> image, byte[] colours)
    {
        float min = float.PositiveInfinity, max = float.NegativeInfinity;
        foreach (float v in image)
        {
            min = Math.Min(min, v);
            max = Math.Max(max, v);
        }

        for (int i = 0; i < image.Length; i++)
            colours[i * 3] = colours[i * 3 + 1] = colours[i * 3 + 2] = (byte)(max > min ? Math.Round(255.0 * (image[i] - min) / (max - min)) : 0);
    }
}

/// <summary>A minimal PNG writer: 8-bit RGB, no interlacing, filter type 0 on every scanline.</summary>
internal static class Png
{
    private static readonly uint[] s_crcTable = CrcTable();

    public static void WriteRgb(Stream stream, byte[] rgb, int width, int height)
    {
        stream.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8;
        header[9] = 2;
        Chunk(stream, "IHDR", header);
        using (var compressed = new MemoryStream())
        {
            using (var zlib = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
            {
                for (int y = 0; y < height; y++)
                {
                    zlib.WriteByte(0);
                    zlib.Write(rgb, y * width * 3, width * 3);
                }
            }

            Chunk(stream, "IDAT", compressed.ToArray());
        }

        Chunk(stream, "IEND", []);
    }

    private static void Chunk(Stream stream, string type, byte[] data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        stream.Write(word);
        var typeBytes = System.Text.Encoding.ASCII.GetBytes(type);
        stream.Write(typeBytes);
        stream.Write(data);
        uint crc = Crc(0xFFFFFFFFu, typeBytes);
        BinaryPrimitives.WriteUInt32BigEndian(word, Crc(crc, data) ^ 0xFFFFFFFFu);
        stream.Write(word);
    }

    internal static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data)
            crc = s_crcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    private static uint[] CrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++)
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }

        return table;
    }
}
