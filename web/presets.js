// The nine clinical domains of QoQ-Med's training data (CLIMB), each with questions in the style
// the model was trained on: the modality named first, then the question and the label choices.

const ask = (what, question, labels) =>
  `Above is ${what}. ${question} Answer with one or multiple phrases from the following:\n${labels.join('\n')}`;

export const PRESETS = [
  { id: 'cxr', name: 'Chest X-ray', examples: [
    ask('a chest X-ray image of a patient', 'What is the diagnosis of the patient in the X-ray image?',
      ['No Finding', 'Atelectasis', 'Cardiomegaly', 'Consolidation', 'Edema', 'Pleural Effusion', 'Pneumonia', 'Pneumothorax']),
    'Is there a pneumothorax on this chest X-ray? Outline it if present.',
  ] },
  { id: 'mammo', name: 'Mammography', examples: [
    ask('a mammogram of a patient', 'What is the BI-RADS assessment of this mammogram?',
      ['BI-RADS 1', 'BI-RADS 2', 'BI-RADS 3', 'BI-RADS 4', 'BI-RADS 5']),
    'Is there a mass or calcification in this mammogram? Outline it.',
  ] },
  { id: 'derm', name: 'Dermoscopy', examples: [
    ask('a dermoscopy image of a skin lesion', 'What is the diagnosis of this lesion?',
      ['melanoma', 'nevus', 'basal cell carcinoma', 'actinic keratosis', 'benign keratosis', 'dermatofibroma', 'vascular lesion']),
  ] },
  { id: 'fundus', name: 'Fundus', examples: [
    ask('a fundus photograph of a patient', 'What is the grade of diabetic retinopathy?',
      ['no DR', 'mild DR', 'moderate DR', 'severe DR', 'proliferative DR']),
  ] },
  { id: 'ct', name: 'CT', examples: [
    ask('a CT slice of a patient', 'Is there an intracranial hemorrhage, and of which type?',
      ['no hemorrhage', 'epidural', 'subdural', 'subarachnoid', 'intraparenchymal', 'intraventricular']),
    'Is there a pulmonary embolism in this CT image? Outline it.',
  ] },
  { id: 'mri', name: 'MRI', examples: [
    ask('a brain MRI of a patient', 'What type of tumor does the patient have?',
      ['glioma', 'meningioma', 'pituitary tumor', 'no tumor']),
  ] },
  { id: 'us', name: 'Ultrasound', examples: [
    ask('a breast ultrasound image', 'What is the diagnosis of the lesion?', ['normal', 'benign', 'malignant']),
  ] },
  { id: 'path', name: 'Pathology', examples: [
    ask('a histopathology image', 'What tissue type is shown?',
      ['lung adenocarcinoma', 'lung squamous cell carcinoma', 'benign lung tissue', 'colon adenocarcinoma', 'benign colon tissue']),
  ] },
  { id: 'ecg', name: 'ECG', examples: [
    ask('a 12-lead ECG of a patient', 'What is the diagnosis of the patient?',
      ['Normal', 'Conduction Disturbance', 'Hypertrophy', 'Myocardial Infarction', 'ST/T Change', 'Atrial Fibrillation/Flutter', 'Other']),
  ] },
  { id: 'text', name: 'Text only', examples: ['What are the typical ECG findings of hyperkalemia?'] },
];
