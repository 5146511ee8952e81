using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Hazy.Data;
using Microsoft.ML.Hazy.Onnx;

namespace Microsoft.ML.Hazy.Slicing;

/// <summary>How a label column becomes the per-class vector the mixture reads.</summary>
internal enum DominoLabelForm
{
    /// <summary>A key: one-hot over its values (all zeros when missing).</summary>
    Key,
    /// <summary>A Boolean or numeric scalar: [1 − y, y] for two classes, otherwise one-hot of the class index y.</summary>
    Scalar,
}

/// <summary>The rows of a data view as the mixture reads them.</summary>
internal sealed record DominoRows(float[] Embeddings, double[] Labels, double[] Predictions, int Count);

/// <summary>
/// The embedding, label and prediction columns of a Domino model: checks them, builds the built-in transforms that
/// turn the label (and a scalar probability) into float vectors, and reads rows for fitting and reports.
/// </summary>
internal sealed class DominoColumns
{
    public const string LabelVector = "__DominoLabelVector";
    public const string LabelValue = "__DominoLabelValue";
    public const string PredictionVector = "__DominoPredictionVector";

    private DominoColumns(string embedding, string label, string prediction, int embeddingSize, int classes,
        DominoLabelForm labelForm, bool predictionIsVector, string[] classNames)
    {
        Embedding = embedding;
        Label = label;
        Prediction = prediction;
        EmbeddingSize = embeddingSize;
        Classes = classes;
        LabelForm = labelForm;
        PredictionIsVector = predictionIsVector;
        ClassNames = classNames;
    }

    public string Embedding { get; }

    public string Label { get; }

    public string Prediction { get; }

    public int EmbeddingSize { get; }

    public int Classes { get; }

    public DominoLabelForm LabelForm { get; }

    public bool PredictionIsVector { get; }

    /// <summary>Display names of the classes, in class-index order.</summary>
    public string[] ClassNames { get; }

    /// <summary>The column the graph reads the prediction from.</summary>
    public string PredictionInput => PredictionIsVector ? Prediction : PredictionVector;

    /// <summary>Checks the three columns of <paramref name="schema"/>; with <paramref name="expected"/>, also that sizes match the fitted model.</summary>
    public static DominoColumns FromSchema(DataViewSchema schema, string embedding, string label, string prediction, DominoColumns? expected = null)
    {
        ArgumentNullException.ThrowIfNull(schema);
        if (embedding == prediction || embedding == label || label == prediction)
            throw new ArgumentException($"The embedding ('{embedding}'), label ('{label}') and prediction ('{prediction}') columns must be three different columns.");
        var emb = SchemaChecks.FloatVectorColumn(schema, embedding, requireKnownSize: true, expectedSize: expected?.EmbeddingSize);
        int embeddingSize = ((VectorDataViewType)emb.Type).Size;

        string predictionExpected = expected is null
            ? "a known-size vector of Single class probabilities, or a Single probability of the positive class"
            : expected.PredictionIsVector ? $"a vector of {expected.Classes} Single class probabilities" : "a Single probability of the positive class";
        var pred = SchemaChecks.Find(schema, prediction, predictionExpected);
        bool predictionIsVector;
        int classes;
        if (pred.Type is VectorDataViewType pv && pv.ItemType == NumberDataViewType.Single && pv.IsKnownSize && pv.Size >= 2)
        {
            predictionIsVector = true;
            classes = pv.Size;
        }
        else if (pred.Type == NumberDataViewType.Single)
        {
            predictionIsVector = false;
            classes = 2;
        }
        else
        {
            throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{prediction}' has type {pred.Type}; expected {predictionExpected}.");
        }
        if (expected is not null && (predictionIsVector != expected.PredictionIsVector || classes != expected.Classes))
            throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{prediction}' has type {pred.Type}; expected {predictionExpected}, as in the data the model was fitted on.");

        var lab = SchemaChecks.Find(schema, label, "a key, Boolean or numeric label");
        DominoLabelForm form;
        string[] names;
        switch (lab.Type)
        {
            case KeyDataViewType key:
                if ((long)key.Count != classes)
                    throw new ArgumentOutOfRangeException(nameof(schema),
                        $"Column '{label}' is a key with {key.Count} values, but column '{prediction}' holds {(predictionIsVector ? $"{classes} class probabilities" : "a binary probability (2 classes)")}; "
                        + "expected the same number of classes.");
                form = DominoLabelForm.Key;
                names = LabelKeyValues.FromColumn(lab).Names();
                break;
            case BooleanDataViewType:
                if (classes != 2)
                    throw new ArgumentOutOfRangeException(nameof(schema),
                        $"Column '{label}' is Boolean (2 classes), but column '{prediction}' holds {classes} class probabilities; expected the same number of classes.");
                form = DominoLabelForm.Scalar;
                names = new[] { "False", "True" };
                break;
            case NumberDataViewType:
                form = DominoLabelForm.Scalar;
                names = Enumerable.Range(0, classes).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(schema), $"Column '{label}' has type {lab.Type}; expected a key, Boolean or numeric label.");
        }
        if (expected is not null && form != expected.LabelForm)
            throw new ArgumentOutOfRangeException(nameof(schema),
                $"Column '{label}' has type {lab.Type}; expected {(expected.LabelForm == DominoLabelForm.Key ? "a key" : "a Boolean or numeric label")}, as in the data the model was fitted on.");
        return new DominoColumns(embedding, label, prediction, embeddingSize, classes, form, predictionIsVector, names);
    }

    /// <summary>Checks the columns of a schema shape (before fitting) and says how the label and prediction are read.</summary>
    public static (DominoLabelForm Label, bool PredictionIsVector) FromShape(SchemaShape shape, string embedding, string label, string prediction)
    {
        ArgumentNullException.ThrowIfNull(shape);
        const string expectedPrediction = "a known-size vector of Single class probabilities or a Single probability";
        const string expectedLabel = "a key, Boolean or numeric label";
        var emb = FindShape(shape, embedding, "a known-size vector of Single");
        if (emb.Kind != SchemaShape.Column.VectorKind.Vector || emb.ItemType != NumberDataViewType.Single)
            throw new ArgumentOutOfRangeException(nameof(shape), $"Column '{embedding}' has type {emb.Kind} of {emb.ItemType}; expected a known-size vector of Single.");
        var pred = FindShape(shape, prediction, expectedPrediction);
        if (pred.ItemType != NumberDataViewType.Single || pred.IsKey || pred.Kind == SchemaShape.Column.VectorKind.VariableVector)
            throw new ArgumentOutOfRangeException(nameof(shape), $"Column '{prediction}' has type {pred.Kind} of {pred.ItemType}; expected {expectedPrediction}.");
        var lab = FindShape(shape, label, expectedLabel);
        if (lab.Kind != SchemaShape.Column.VectorKind.Scalar || !(lab.IsKey || lab.ItemType == BooleanDataViewType.Instance || lab.ItemType is NumberDataViewType))
            throw new ArgumentOutOfRangeException(nameof(shape), $"Column '{label}' has type {lab.Kind} of {lab.ItemType}; expected {expectedLabel}.");
        return (lab.IsKey ? DominoLabelForm.Key : DominoLabelForm.Scalar, pred.Kind == SchemaShape.Column.VectorKind.Vector);
    }

    private static SchemaShape.Column FindShape(SchemaShape shape, string name, string expected)
    {
        foreach (var c in shape)
        {
            if (c.Name == name)
                return c;
        }
        throw new ArgumentOutOfRangeException(nameof(shape), $"Column '{name}' not found in the input schema; expected {expected}.");
    }

    /// <summary>The temporary columns the scoring chain adds before the graph and drops after it.</summary>
    public static string[] TemporaryColumns(DominoLabelForm form, bool predictionIsVector)
    {
        var list = new List<string> { LabelVector };
        if (form == DominoLabelForm.Scalar)
            list.Add(LabelValue);
        if (!predictionIsVector)
            list.Add(PredictionVector);
        return list.ToArray();
    }

    /// <summary>Built-in transforms that give the graph its float-vector inputs: the label as a vector, and a scalar probability as a 1-vector.</summary>
    public static IEstimator<ITransformer> InputTransforms(MLContext ml, string label, string prediction, DominoLabelForm form, bool predictionIsVector)
    {
        IEstimator<ITransformer> chain = form == DominoLabelForm.Key
            ? ml.Transforms.Conversion.MapKeyToVector(LabelVector, label)
            : ml.Transforms.Conversion.ConvertType(LabelValue, label, DataKind.Single).Append(ml.Transforms.Concatenate(LabelVector, LabelValue));
        if (!predictionIsVector)
            chain = chain.Append(ml.Transforms.Concatenate(PredictionVector, prediction));
        return chain;
    }

    /// <summary>Reads every row, checking that embeddings are finite, probabilities lie in [0, 1] and labels are valid classes.</summary>
    public DominoRows Read(IDataView data, CancellationToken cancellation = default)
    {
        var ml = new MLContext();
        var prepared = InputTransforms(ml, Label, Prediction, LabelForm, PredictionIsVector).Fit(data).Transform(data);
        var embCol = prepared.Schema[Embedding];
        var labCol = prepared.Schema[LabelVector];
        var predCol = prepared.Schema[PredictionInput];
        int d = EmbeddingSize, c = Classes;
        var emb = new List<float>();
        var labels = new List<double>();
        var preds = new List<double>();
        using var cursor = prepared.GetRowCursor(new[] { embCol, labCol, predCol });
        var getEmb = cursor.GetGetter<VBuffer<float>>(embCol);
        var getLab = cursor.GetGetter<VBuffer<float>>(labCol);
        var getPred = cursor.GetGetter<VBuffer<float>>(predCol);
        VBuffer<float> e = default, l = default, p = default;
        var labelRow = new double[c];
        var predictionRow = new double[c];
        long row = 0;
        while (cursor.MoveNext())
        {
            if ((row & 1023) == 0)
                cancellation.ThrowIfCancellationRequested();
            getEmb(ref e);
            getLab(ref l);
            getPred(ref p);
            int slot = 0;
            foreach (var v in e.DenseValues())
            {
                if (!float.IsFinite(v))
                    throw new InvalidOperationException($"Column '{Embedding}' holds {(float.IsNaN(v) ? "NaN" : v.ToString(CultureInfo.InvariantCulture))} at row {row}, slot {slot}; Domino needs finite embeddings.");
                emb.Add(v);
                slot++;
            }
            LabelRow(l, row, labelRow);
            PredictionRow(p, row, predictionRow);
            labels.AddRange(labelRow);
            preds.AddRange(predictionRow);
            row++;
        }
        if (row > int.MaxValue / Math.Max(d, 1))
            throw new InvalidOperationException($"The data has {row} rows of {d} values; Domino holds at most {int.MaxValue / Math.Max(d, 1)} such rows in memory.");
        return new DominoRows(emb.ToArray(), labels.ToArray(), preds.ToArray(), (int)row);
    }

    private void LabelRow(VBuffer<float> value, long row, double[] into)
    {
        int c = Classes;
        if (LabelForm == DominoLabelForm.Key)
        {
            int j = 0;
            foreach (var v in value.DenseValues())
                into[j++] = v;
            return;
        }
        float y = value.GetItemOrDefault(0);
        Array.Clear(into);
        if (c == 2)
        {
            if (!(y >= 0 && y <= 1))
                throw new InvalidOperationException($"Column '{Label}' holds {y.ToString(CultureInfo.InvariantCulture)} at row {row}; expected a two-class label: 0 or 1 (or a probability in [0, 1]).");
            into[0] = 1.0 - y;
            into[1] = y;
            return;
        }
        if (!(y >= 0 && y < c) || y != MathF.Floor(y))
            throw new InvalidOperationException($"Column '{Label}' holds {y.ToString(CultureInfo.InvariantCulture)} at row {row}; expected a class index 0 to {c - 1} (or use a key label).");
        into[(int)y] = 1;
    }

    private void PredictionRow(VBuffer<float> value, long row, double[] into)
    {
        const float slack = 1e-5f;
        if (!PredictionIsVector)
        {
            float q = value.GetItemOrDefault(0);
            if (!(q >= -slack && q <= 1 + slack))
                throw new InvalidOperationException($"Column '{Prediction}' holds {q.ToString(CultureInfo.InvariantCulture)} at row {row}; expected the probability of the positive class in [0, 1] "
                    + "(for a binary classifier pass its 'Probability' column, not the 'Score' margin).");
            into[0] = 1.0 - q;
            into[1] = q;
            return;
        }
        int j = 0;
        foreach (var v in value.DenseValues())
        {
            if (!(v >= -slack && v <= 1 + slack))
                throw new InvalidOperationException($"Column '{Prediction}' holds {v.ToString(CultureInfo.InvariantCulture)} at row {row}, slot {j}; expected class probabilities in [0, 1].");
            into[j++] = v;
        }
    }
}
