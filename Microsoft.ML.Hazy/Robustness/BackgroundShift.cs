using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;

namespace Microsoft.ML.Hazy.Robustness;

/// <summary>Which split of the background-shift benchmark to draw.</summary>
public enum BackgroundShiftSplit
{
    /// <summary>Training rows: the marker agrees with the label at <see cref="BackgroundShiftOptions.MarkerAgreement"/>.</summary>
    Train,

    /// <summary>In-distribution test rows: drawn as the training rows.</summary>
    InDistribution,

    /// <summary>Shifted test rows: the marker agrees with the label at 1 − <see cref="BackgroundShiftOptions.MarkerAgreement"/> (anti-correlated).</summary>
    Shifted,
}

/// <summary>Options of <see cref="BackgroundShift.Generate"/>.</summary>
public sealed class BackgroundShiftOptions
{
    /// <summary>The defaults.</summary>
    public static class Defaults
    {
        /// <summary>Side of the square canvas: 48 pixels.</summary>
        public const int CanvasSize = 48;

        /// <summary>The source class of the positive rows: 6 (Fashion-MNIST "Shirt").</summary>
        public const int PositiveClass = 6;

        /// <summary>The source class of the negative rows: 0 (Fashion-MNIST "T-shirt/top").</summary>
        public const int NegativeClass = 0;

        /// <summary>P(marker present = label) in the training and in-distribution rows: 0.9.</summary>
        public const double MarkerAgreement = 0.9;

        /// <summary>P(site = label), the band's texture variable, in every split: 0.85.</summary>
        public const double SiteAgreement = 0.85;

        /// <summary>Largest value of the uniform background noise: 0.1.</summary>
        public const double NoiseLevel = 0.1;
    }

    /// <summary>Side of the square canvas in pixels (at least 46: the object, the band and the marker must fit).</summary>
    public int CanvasSize { get; set; } = Defaults.CanvasSize;

    /// <summary>The source class (0-9) whose images are the positive rows.</summary>
    public int PositiveClass { get; set; } = Defaults.PositiveClass;

    /// <summary>The source class (0-9) whose images are the negative rows.</summary>
    public int NegativeClass { get; set; } = Defaults.NegativeClass;

    /// <summary>P(marker present = label) in <see cref="BackgroundShiftSplit.Train"/> and <see cref="BackgroundShiftSplit.InDistribution"/>; 1 minus it when shifted.</summary>
    public double MarkerAgreement { get; set; } = Defaults.MarkerAgreement;

    /// <summary>P(site = label) in every split: how much the band's texture tells about the label.</summary>
    public double SiteAgreement { get; set; } = Defaults.SiteAgreement;

    /// <summary>Largest value of the uniform noise on every canvas pixel.</summary>
    public double NoiseLevel { get; set; } = Defaults.NoiseLevel;

    /// <summary>Seed of the draws (placement, site, marker, noise).</summary>
    public int Seed { get; set; }

    /// <summary>At most this many rows (the first ones of the two classes); null: all.</summary>
    public int? MaximumRows { get; set; }

    internal void Check()
    {
        if (CanvasSize < BackgroundShift.MinimumCanvas)
            throw new ArgumentOutOfRangeException(nameof(CanvasSize), CanvasSize, $"Options.CanvasSize must be at least {BackgroundShift.MinimumCanvas}.");
        if (PositiveClass is < 0 or > 9 || NegativeClass is < 0 or > 9 || PositiveClass == NegativeClass)
            throw new ArgumentOutOfRangeException(nameof(PositiveClass), $"Options.PositiveClass ({PositiveClass}) and NegativeClass ({NegativeClass}) must be two different classes 0-9.");
        if (!(MarkerAgreement is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(MarkerAgreement), MarkerAgreement, "Options.MarkerAgreement must be within [0, 1].");
        if (!(SiteAgreement is >= 0 and <= 1))
            throw new ArgumentOutOfRangeException(nameof(SiteAgreement), SiteAgreement, "Options.SiteAgreement must be within [0, 1].");
        if (!(NoiseLevel is >= 0 and < 1))
            throw new ArgumentOutOfRangeException(nameof(NoiseLevel), NoiseLevel, "Options.NoiseLevel must be within [0, 1).");
        if (MaximumRows is <= 0)
            throw new ArgumentOutOfRangeException(nameof(MaximumRows), MaximumRows, "Options.MaximumRows must be null or positive.");
    }
}

/// <summary>
/// A synthetic distribution-shift benchmark for mask-guided training (after Parmar et al., 2022): two Fashion-MNIST classes,
/// each 28×28 image placed on a larger canvas, a textured band beside it whose orientation (the "site") agrees with the label
/// in every split, and a spurious marker that agrees with the label in training and disagrees with it in the shifted test.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input columns
/// | Column | Type |
/// | -- | -- |
/// | `Label` | key (0-9 class + 1), as `FashionMnist.Load` gives |
/// | `Features` | vector of 784 Single in [0, 1], 28×28 row by row |
///
/// ### Output columns
/// | Column | Type | Content |
/// | -- | -- | -- |
/// | `Label` | Boolean | true for the positive class |
/// | `Features` | vector of S·S Single | the canvas, row by row: noise in [0, NoiseLevel], the object, the band, the marker |
/// | `LesionMask` | vector of S·S Boolean | the object's own pixels (source pixel &gt; 0.05) |
/// | `TaskMask` | vector of S·S Boolean | the lesion mask and the band's rectangle |
/// | `Site` | Boolean | the band's texture: vertical stripes (true) or horizontal |
/// | `Marker` | Boolean | whether the 4×4 marker (top-left corner, outside both masks) is drawn |
///
/// Placement: the object's top-left corner at column 2-6 and row 8-14 (uniform); the band is 8 pixels wide, 4 pixels right of
/// the object, as tall as it; its pixels are 0.35 + 0.25·sin(2π·(t/4 + φ)) along columns (site true) or rows, plus noise.
/// The marker is a 4×4 square of value 1 at rows and columns 1-4. Only the rows of the two classes are kept, in source order.
/// ]]></format>
/// </remarks>
public static class BackgroundShift
{
    internal const int MinimumCanvas = 46;
    internal const int Source = 28;
    internal const int BandWidth = 8;
    internal const int BandGap = 4;
    internal const int MarkerSide = 4;
    internal const int MarkerOffset = 1;

    /// <summary>One generated row.</summary>
    internal sealed class Row
    {
        public bool Label;
        public float[] Features = Array.Empty<float>();
        public bool[] LesionMask = Array.Empty<bool>();
        public bool[] TaskMask = Array.Empty<bool>();
        public bool Site;
        public bool Marker;
    }

    /// <summary>Draws the <paramref name="split"/> of the benchmark from Fashion-MNIST rows (or any 28×28 images with a key label).</summary>
    /// <param name="mlContext">The ML.NET context.</param>
    /// <param name="images">Rows with <c>Label</c> (key of 10 classes) and <c>Features</c> (784 Single).</param>
    /// <param name="split">Train, in-distribution or shifted.</param>
    /// <param name="options">The canvas, classes, correlations and seed; null uses the defaults with seed 0.</param>
    /// <returns>The rows, with the columns in the remarks.</returns>
    public static IDataView Generate(MLContext mlContext, IDataView images, BackgroundShiftSplit split, BackgroundShiftOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(images);
        options ??= new BackgroundShiftOptions();
        var rows = GenerateRows(images, split, options);
        int side = options.CanvasSize * options.CanvasSize;
        var schema = SchemaDefinition.Create(typeof(Row));
        schema[nameof(Row.Features)].ColumnType = new VectorDataViewType(NumberDataViewType.Single, side);
        schema[nameof(Row.LesionMask)].ColumnType = new VectorDataViewType(BooleanDataViewType.Instance, side);
        schema[nameof(Row.TaskMask)].ColumnType = new VectorDataViewType(BooleanDataViewType.Instance, side);
        return mlContext.Data.LoadFromEnumerable(rows, schema);
    }

    /// <summary>The rows of <see cref="Generate"/>.</summary>
    internal static List<Row> GenerateRows(IDataView images, BackgroundShiftSplit split, BackgroundShiftOptions options)
    {
        options.Check();
        if (!Enum.IsDefined(split))
            throw new ArgumentOutOfRangeException(nameof(split), split, "Not a BackgroundShiftSplit.");
        var label = images.Schema.GetColumnOrNull(DefaultColumnNames.Label)
            ?? throw new ArgumentOutOfRangeException(nameof(images), "Column 'Label' not found; expected a key of the 10 classes.");
        if (label.Type is not KeyDataViewType)
            throw new ArgumentOutOfRangeException(nameof(images), $"Column 'Label' has type {label.Type}; expected a key of the 10 classes.");
        var features = SchemaChecks.FloatVectorColumn(images.Schema, DefaultColumnNames.Features, requireKnownSize: true);
        if (((VectorDataViewType)features.Type).Size != Source * Source)
            throw new ArgumentOutOfRangeException(nameof(images), $"Column 'Features' has {((VectorDataViewType)features.Type).Size} values per row; expected {Source * Source} (28×28).");
        // One stream per split, so the splits of one seed are independent draws.
        var random = new Random(HashCode.Combine(options.Seed, (int)split, 7919));
        double markerAgreement = split == BackgroundShiftSplit.Shifted ? 1 - options.MarkerAgreement : options.MarkerAgreement;
        int s = options.CanvasSize;
        var rows = new List<Row>();
        using var cursor = images.GetRowCursor(new[] { label, features });
        var getLabel = cursor.GetGetter<uint>(label);
        var getFeatures = cursor.GetGetter<VBuffer<float>>(features);
        uint key = 0;
        var buffer = default(VBuffer<float>);
        while (cursor.MoveNext() && (options.MaximumRows is not int max || rows.Count < max))
        {
            getLabel(ref key);
            int cls = (int)key - 1;
            if (cls != options.PositiveClass && cls != options.NegativeClass)
                continue;
            getFeatures(ref buffer);
            var source = buffer.DenseValues().ToArray();
            bool y = cls == options.PositiveClass;
            var row = new Row
            {
                Label = y,
                Features = new float[s * s],
                LesionMask = new bool[s * s],
                TaskMask = new bool[s * s],
            };
            for (int i = 0; i < row.Features.Length; i++)
                row.Features[i] = (float)(random.NextDouble() * options.NoiseLevel);
            int ox = 2 + random.Next(5), oy = 8 + random.Next(7);
            for (int r = 0; r < Source; r++)
            {
                for (int c = 0; c < Source; c++)
                {
                    float v = source[r * Source + c];
                    if (v <= 0.05f)
                        continue;
                    int at = (oy + r) * s + ox + c;
                    row.Features[at] = Math.Max(row.Features[at], v);
                    row.LesionMask[at] = true;
                    row.TaskMask[at] = true;
                }
            }
            row.Site = random.NextDouble() < options.SiteAgreement ? y : !y;
            double phase = random.NextDouble();
            int bx = ox + Source + BandGap;
            for (int r = 0; r < Source; r++)
            {
                for (int c = 0; c < BandWidth; c++)
                {
                    double t = row.Site ? c : r;
                    int at = (oy + r) * s + bx + c;
                    row.Features[at] = (float)Math.Clamp(0.35 + 0.25 * Math.Sin(2 * Math.PI * (t / 4 + phase)) + random.NextDouble() * options.NoiseLevel, 0, 1);
                    row.TaskMask[at] = true;
                }
            }
            row.Marker = random.NextDouble() < markerAgreement ? y : !y;
            if (row.Marker)
            {
                for (int r = MarkerOffset; r < MarkerOffset + MarkerSide; r++)
                {
                    for (int c = MarkerOffset; c < MarkerOffset + MarkerSide; c++)
                        row.Features[r * s + c] = 1f;
                }
            }
            rows.Add(row);
        }
        return rows;
    }
}
