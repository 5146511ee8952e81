using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;

namespace Microsoft.ML.Hazy.Interpretation;

/// <summary>
/// Scores rows with any ML.NET <see cref="ITransformer"/> (LightGbm, SDCA, ONNX, Hazy models): each call wraps
/// the rows in one in-memory <see cref="IDataView"/> with a known-size vector column, runs
/// <see cref="ITransformer.Transform"/> once and reads the score column.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// | Column | Type | Direction |
/// | -- | -- | -- |
/// | feature column | known-size vector of Single (FeatureSize) | built by this class, read by the model |
/// | score column | Single (OutputCount 1) or known-size vector of Single (OutputCount K) | written by the model, read by this class |
/// ]]></format>
/// The model must need no input column other than the feature column.
/// </remarks>
public sealed class TransformerScoreFunction : IScoreFunction
{
    private readonly ITransformer _model;
    private readonly DataViewSchema _inputSchema;
    private readonly string _scoreColumnName;
    private readonly bool _vectorScore;

    /// <summary>Wraps <paramref name="model"/>.</summary>
    /// <param name="model">The fitted model.</param>
    /// <param name="featureColumnName">The name of the vector column the model reads.</param>
    /// <param name="featureSize">Values per row.</param>
    /// <param name="scoreColumnName">The output column to read: Single, or a known-size vector of Single.</param>
    public TransformerScoreFunction(ITransformer model, string featureColumnName, int featureSize, string scoreColumnName = "Score")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(featureColumnName);
        ArgumentException.ThrowIfNullOrEmpty(scoreColumnName);
        AttributionChecks.Positive(featureSize, nameof(featureSize));
        var builder = new DataViewSchema.Builder();
        builder.AddColumn(featureColumnName, new VectorDataViewType(NumberDataViewType.Single, featureSize));
        _inputSchema = builder.ToSchema();
        DataViewSchema output;
        try
        {
            output = model.GetOutputSchema(_inputSchema);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            throw new ArgumentException(
                $"The model cannot score a data view holding only the vector column '{featureColumnName}' of {featureSize} Single values: {e.Message} " +
                "Pass the part of the pipeline that scores (for example the trainer's transformer without the label conversion).", nameof(model), e);
        }

        var score = output.GetColumnOrNull(scoreColumnName)
            ?? throw new ArgumentException($"The model's output has no column '{scoreColumnName}'; its columns are {string.Join(", ", output.Where(c => !c.IsHidden).Select(c => $"'{c.Name}'"))}.", nameof(scoreColumnName));
        if (score.Type == NumberDataViewType.Single)
            OutputCount = 1;
        else if (score.Type is VectorDataViewType { ItemType: var item, Size: > 0 } vector && item == NumberDataViewType.Single)
        {
            OutputCount = vector.Size;
            _vectorScore = true;
        }
        else
            throw new ArgumentException($"The score column '{scoreColumnName}' has type {score.Type}; expected Single or a known-size vector of Single.", nameof(scoreColumnName));
        _model = model;
        _scoreColumnName = scoreColumnName;
        FeatureSize = featureSize;
    }

    /// <inheritdoc/>
    public int FeatureSize { get; }

    /// <inheritdoc/>
    public int OutputCount { get; }

    /// <inheritdoc/>
    public float[] Score(ReadOnlySpan<float> rows, int count)
    {
        AttributionChecks.Rows(rows.Length, count, FeatureSize, nameof(rows));
        var data = rows.ToArray();
        int d = FeatureSize;
        RowValueGetter<VBuffer<float>> features = (int row, ref VBuffer<float> value) =>
        {
            var editor = VBufferEditor.Create(ref value, d);
            data.AsSpan(row * d, d).CopyTo(editor.Values);
            value = editor.Commit();
        };
        var scored = _model.Transform(new RandomAccessDataView(_inputSchema, count, features));
        var column = scored.Schema[_scoreColumnName];
        var result = new float[count * OutputCount];
        using var cursor = scored.GetRowCursor([column]);
        int i = 0;
        if (_vectorScore)
        {
            var getter = cursor.GetGetter<VBuffer<float>>(column);
            VBuffer<float> buffer = default;
            while (cursor.MoveNext())
            {
                getter(ref buffer);
                buffer.CopyTo(result.AsSpan(i * OutputCount, OutputCount));
                i++;
            }
        }
        else
        {
            var getter = cursor.GetGetter<float>(column);
            float value = 0;
            while (cursor.MoveNext())
            {
                getter(ref value);
                result[i++] = value;
            }
        }

        if (i != count)
            throw new InvalidOperationException($"The model returned {i} rows of '{_scoreColumnName}' for {count} input rows.");
        return result;
    }
}
